"""Shared HTTP plumbing: JSON answers, Keycloak errors, counters and injected faults."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from keycloak_emulator.emulator import Emulator
from keycloak_emulator.errors import KeycloakError
from keycloak_emulator.form import Form
from keycloak_emulator.store import Realm

EMULATOR_KEY = web.AppKey("emulator", Emulator)


def emulator(request: web.Request) -> Emulator:
    """The emulator serving this application."""
    return request.app[EMULATOR_KEY]


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response as Keycloak sends it."""
    return web.json_response(body, status=status, headers=headers)


def error_answer(exc: KeycloakError) -> web.Response:
    """A Keycloak error response."""
    return json_answer(exc.body, exc.status, exc.headers)


def no_realm() -> KeycloakError:
    """Keycloak's answer for an unknown realm."""
    return KeycloakError(404, "Realm does not exist", "For more on this error consult the server log.")


async def enter(request: web.Request, key: str) -> Realm:
    """Resolve the realm, count the call, and apply any fault injected for `key`."""
    emu = emulator(request)
    name = request.match_info["realm"]
    if name not in emu.realms:
        raise no_realm()
    emu.count(name, key)
    if emu.call_cost:
        await asyncio.sleep(emu.call_cost)
    fault = emu.take_fault(name, key)
    if fault is not None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            raise KeycloakError(fault.status, fault.error, fault.description or f"injected fault on {key}")
    return emu.realms[name]


async def form_of(request: web.Request) -> Form:
    """The url-encoded body as ordered pairs (repeated keys kept)."""
    posted = await request.post()
    return Form.of((k, str(v)) for k, v in posted.items())


def query_of(request: web.Request) -> Form:
    """The query string as ordered pairs."""
    return Form.of(request.query.items())


@web.middleware
async def keycloak_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn `KeycloakError` into its JSON body, in one place."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except KeycloakError as exc:
        return error_answer(exc)
