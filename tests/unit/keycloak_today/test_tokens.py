"""Bearer checks that follow Keycloak's own (issue #17): `typ` must be `Bearer`; a wrong issuer is
logged with what was expected and what arrived, at most once a minute."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from keycloak_emulator import Emulator
from proxy.errors import Unauthorized
from proxy_demo.policy import DEMO_POLICY

from .stack import REALM, keycloak_stack


@pytest.mark.parametrize("typ", [None, "ID", "Refresh", "bearer"])
async def test_only_typ_bearer_is_an_access_token(typ: str | None) -> None:
    """Keycloak's bearer authenticator requires `typ: Bearer`; a token without it is refused too."""
    async with keycloak_stack() as stack:
        token = stack.emu.mint(REALM, {"typ": typ}, user="dave")
        with pytest.raises(Unauthorized, match="not an access token"):
            await stack.authn.authenticate(f"Bearer {token}")
        assert (
            await stack.authn.authenticate(f"Bearer {stack.emu.mint(REALM, {}, user='dave')}")
        ).subject == "dave"


async def test_issuer_mismatch_names_expected_and_received_once_a_minute() -> None:
    """Hostname v2 without a fixed hostname: browser tokens carry the public issuer, discovery the
    internal one; the proxy says so (expected vs received) without flooding the log."""
    emu = Emulator.from_files([DEMO_POLICY], dynamic_hostname=True)
    async with keycloak_stack(emu) as stack:
        public = "http://sso.example.org/realms/nerc"
        tokens = [emu.mint(REALM, {"iss": public}, user="dave") for _ in range(5)]
        with capture_logs() as logs:
            for token in tokens:
                with pytest.raises(Unauthorized, match="wrong issuer"):
                    await stack.authn.authenticate(f"Bearer {token}")
    warned = [e for e in logs if e["event"] == "token_issuer_mismatch"]
    assert len(warned) == 1
    assert warned[0]["expected"] == emu.issuer(REALM) and warned[0]["received"] == public
