"""How the proxy reads Keycloak's refusals (issue #17): `invalid_grant` is 401 whatever its status,
anything else unexplained is 503 — and Keycloak's own `error`/`error_description` is logged."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from keycloak_emulator import Emulator
from proxy.errors import KeycloakUnavailable, Unauthorized
from proxy_demo.policy import DEMO_POLICY

from .stack import PROD, REALM, keycloak_stack


@pytest.mark.parametrize(("version", "status"), [("26.6.4", 400), ("26.5.7", 401)])
async def test_a_disabled_users_token_is_401_on_an_uncached_scope(version: str, status: int) -> None:
    """Keycloak 26.6+ answers a disabled user's UMA grant 400 `invalid_grant` (PR keycloak#46528),
    older releases 401: both are 401 to the caller (not 503), and the log names Keycloak's words."""
    emu = Emulator.from_files([DEMO_POLICY], keycloak_version=version)
    async with keycloak_stack(emu) as stack:
        carol = await stack.user("carol")
        emu.set_user_enabled(REALM, "carol", False)
        with capture_logs() as logs, pytest.raises(Unauthorized):
            await stack.authz.holdings(carol, frozenset({PROD}), {})
    refused = [e for e in logs if e["event"] == "keycloak_refused_token"]
    assert [(e["status"], e["error"], e["error_description"]) for e in refused] == [
        (status, "invalid_grant", "Invalid bearer token")
    ]


async def test_a_known_regression_is_503_with_keycloaks_words_in_the_log() -> None:
    """keycloak#51250 (26.7.0): valid tokens refused with 400 `unauthorized_client` "Invalid
    identity" — 503 to the caller (never a guess), the body's words logged, nothing cached."""
    async with keycloak_stack() as stack:
        dave = await stack.user("dave")
        stack.emu.inject_fault(
            "token.uma", status=400, error="unauthorized_client", description="Invalid identity", times=1
        )
        with capture_logs() as logs, pytest.raises(KeycloakUnavailable):
            await stack.authz.holdings(dave, frozenset({PROD}), {})
        assert (await stack.authz.holdings(dave, frozenset({PROD}), {})).holds_anything()
    logged = [e for e in logs if e["event"] == "keycloak_unexpected_answer"]
    assert [(e["error"], e["error_description"]) for e in logged] == [
        ("unauthorized_client", "Invalid identity")
    ]
