"""The emulator's aiohttp application."""

from __future__ import annotations

from aiohttp import web

from keycloak_emulator import http_admin, http_controls, http_oidc
from keycloak_emulator.emulator import Emulator
from keycloak_emulator.http_common import EMULATOR_KEY, keycloak_errors


def build_app(emu: Emulator) -> web.Application:
    """An application serving `emu`'s realms, admin API and test controls."""
    app = web.Application(middlewares=[keycloak_errors])
    app[EMULATOR_KEY] = emu
    http_oidc.add_routes(app)
    http_controls.add_routes(app)
    http_admin.add_routes(app)
    return app
