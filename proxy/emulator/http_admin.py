"""Keycloak's admin REST API, the part `policies apply` uses."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register the admin endpoints."""
