"""Test controls under `/_emulator/`, outside Keycloak's URL space."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keycloak_emulator.errors import KeycloakError
from keycloak_emulator.http_common import emulator, json_answer, no_realm

PREFIX = "/_emulator"


def _realm(request: web.Request) -> str:
    name = request.match_info["realm"]
    if name not in emulator(request).realms:
        raise no_realm()
    return name


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise KeycloakError(400, "invalid_request", "expected a JSON object")
    return body


async def rotate_key(request: web.Request) -> web.Response:
    """POST: sign with a new key from now on; the old ones stay published."""
    return json_answer({"kid": emulator(request).rotate_key(_realm(request))})


async def retire_keys(request: web.Request) -> web.Response:
    """POST: unpublish every key but the active one."""
    return json_answer({"retired": emulator(request).retire_keys(_realm(request))})


async def stats(request: web.Request) -> web.Response:
    """GET: call counters of one realm."""
    return json_answer(dict(emulator(request).stats(_realm(request))))


async def reset_stats(request: web.Request) -> web.Response:
    """POST: zero all counters."""
    emulator(request).reset_stats()
    return json_answer({})


async def mint(request: web.Request) -> web.Response:
    """POST `{"claims":{…},"lifetime":300,"user":…,"client":…,"kid":…}`: a signed token."""
    body = await _json(request)
    token = emulator(request).mint(
        _realm(request),
        body.get("claims") or {},
        lifetime=int(body.get("lifetime", 300)),
        kid=body.get("kid"),
        headers=body.get("headers"),
        user=body.get("user"),
        client=body.get("client"),
    )
    return json_answer({"access_token": token})


async def revoke(request: web.Request) -> web.Response:
    """POST `{"token": …}`: end the token's session."""
    body = await _json(request)
    emulator(request).revoke(_realm(request), str(body["token"]))
    return json_answer({})


async def add_fault(request: web.Request) -> web.Response:
    """POST `{"key":"token.uma","status":503,"delay":0,"times":null,"realm":null}`."""
    body = await _json(request)
    emulator(request).inject_fault(
        str(body["key"]),
        status=body.get("status", 503),
        delay=float(body.get("delay", 0.0)),
        times=body.get("times"),
        realm=body.get("realm"),
        error=str(body.get("error", "emulator_fault")),
        description=body.get("description"),
    )
    return json_answer({})


async def clear_faults(request: web.Request) -> web.Response:
    """DELETE: remove every fault."""
    emulator(request).clear_faults()
    return json_answer({})


async def advance(request: web.Request) -> web.Response:
    """POST `{"seconds": N}`: move the emulator's clock forward."""
    body = await _json(request)
    emulator(request).advance(int(body.get("seconds", 0)))
    return json_answer({"now": emulator(request).now()})


def add_routes(app: web.Application) -> None:
    """Register the controls."""
    app.router.add_post(f"{PREFIX}/realms/{{realm}}/rotate-key", rotate_key)
    app.router.add_post(f"{PREFIX}/realms/{{realm}}/retire-keys", retire_keys)
    app.router.add_get(f"{PREFIX}/realms/{{realm}}/stats", stats)
    app.router.add_post(f"{PREFIX}/realms/{{realm}}/mint", mint)
    app.router.add_post(f"{PREFIX}/realms/{{realm}}/revoke", revoke)
    app.router.add_post(f"{PREFIX}/reset-stats", reset_stats)
    app.router.add_post(f"{PREFIX}/faults", add_fault)
    app.router.add_delete(f"{PREFIX}/faults", clear_faults)
    app.router.add_post(f"{PREFIX}/advance", advance)
