"""Introspection against Keycloak 26.6.2+, which checks the audience (issue #17, docs/keycloak.md).

The documented outcome without audience mappers: the proxy starts, logs an error-level warning
naming the fix, and callers whose tokens lack the proxy's client in `aud` get 401 with the reason;
with the mappers (and `PROXY_AUTH_AUDIENCES` set), the same callers are served.
"""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from keycloak_emulator import Emulator
from proxy.errors import Unauthorized
from proxy_demo.policy import DEMO_POLICY

from .stack import REALM, RS, keycloak_stack


def without_mappers() -> Emulator:
    """The demo realm with every client's audience mapper removed (tokens carry aud=account)."""
    emu = Emulator.from_files([DEMO_POLICY])
    for client in emu.realm(REALM).clients.values():
        client.protocol_mappers = [
            m for m in client.protocol_mappers if m.get("protocolMapper") != "oidc-audience-mapper"
        ]
    return emu


async def test_without_audience_mappers_start_warns_and_callers_get_401() -> None:
    """26.6.2+ answers active=false: a loud warning at start, then 401 naming the missing audience."""
    with capture_logs() as logs:
        async with keycloak_stack(without_mappers(), auth_introspect=True) as stack:
            with pytest.raises(Unauthorized, match="audience mapper"):
                await stack.user("dave")
            with pytest.raises(Unauthorized, match="audience mapper"):
                await stack.user("bob")
    events = [e["event"] for e in logs]
    assert events.count("introspection_audience_unchecked") == 1
    assert events.count("introspection_inactive_without_audience") == 1  # rate-limited
    warning = next(e for e in logs if e["event"] == "introspection_audience_unchecked")
    assert warning["log_level"] == "error" and f"PROXY_AUTH_AUDIENCES={RS}" in warning["hint"]


async def test_with_audience_mappers_introspection_serves_callers() -> None:
    """With the mappers and `PROXY_AUTH_AUDIENCES` naming the client, no warning and callers pass."""
    with capture_logs() as logs:
        async with keycloak_stack(auth_introspect=True, auth_audiences=RS) as stack:
            dave = await stack.user("dave")
            assert (await stack.authz.holdings(dave, None, {})).holds_anything()
            assert stack.calls("introspect") == 1
    assert "introspection_audience_unchecked" not in [e["event"] for e in logs]


async def test_a_revoked_token_with_the_audience_is_plainly_inactive() -> None:
    """A logged-out session with the right audience is 401 "no longer active", not an audience hint."""
    async with keycloak_stack(auth_introspect=True, auth_audiences=RS) as stack:
        token = stack.token("carol")
        stack.emu.revoke(REALM, token)
        with pytest.raises(Unauthorized, match="no longer active"):
            await stack.authn.authenticate(f"Bearer {token}")
