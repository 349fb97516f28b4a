"""Test controls: counters, faults, minting, rotation over HTTP, servers and the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import jwt

from keycloak_emulator import Emulator, EmulatorServer, main
from tests.unit.emulator.support import DEMO, Keycloak


async def test_counters_per_grant_and_reset(kc: Keycloak) -> None:
    """Every token call counts under `token` and `token.<grant>`; reset zeroes them."""
    token = kc.user_token("dave")
    await asyncio.gather(*(kc.uma(token, "HUB-moc#GET") for _ in range(50)))
    await kc.get("/realms/nerc/protocol/openid-connect/certs")
    stats = kc.emu.stats("nerc")
    assert (stats["token.uma"], stats["token"], stats["certs"], stats["token.password"]) == (50, 50, 1, 0)
    answer = await kc.get("/_emulator/realms/nerc/stats")
    assert answer.body["token.uma"] == 50
    await kc.post("/_emulator/reset-stats", [])
    assert kc.emu.stats("nerc")["token.uma"] == 0


async def test_injected_fault_answers_status_then_clears(kc: Keycloak) -> None:
    """A fault on `token.uma` answers 503 for `times` calls, then the real answer returns."""
    token = kc.user_token("dave")
    kc.emu.inject_fault("token.uma", status=503, times=1)
    failed = await kc.uma(token, "HUB-moc#GET")
    ok = await kc.uma(token, "HUB-moc#GET")
    assert (failed.status, ok.status) == (503, 200)


async def test_delay_fault_slows_the_endpoint(kc: Keycloak) -> None:
    """A delay-only fault keeps the real answer but makes the client wait (timeout tests)."""
    kc.emu.inject_fault("certs", status=None, delay=0.3)
    timeout = aiohttp.ClientTimeout(total=0.1)
    try:
        async with kc.http.get("/realms/nerc/protocol/openid-connect/certs", timeout=timeout):
            raise AssertionError("should have timed out")
    except TimeoutError:
        pass
    kc.emu.clear_faults()


async def test_mint_over_http_with_overrides(kc: Keycloak) -> None:
    """`/_emulator/realms/{realm}/mint` signs a user token with overridden claims."""
    async with kc.http.post(
        "/_emulator/realms/nerc/mint", json={"user": "alice", "claims": {"azp": "other", "exp": 5}}
    ) as resp:
        token = (await resp.json())["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["preferred_username"], claims["azp"], claims["exp"]) == ("alice", "other", 5)


async def test_mint_can_drop_claims_and_forge_headers(emu: Emulator) -> None:
    """`mint` removes claims given as None and takes foreign kid/headers for attack tests."""
    token = emu.mint("nerc", {"exp": None}, user="bob", kid="evil", headers={"jku": "http://x"})
    header = jwt.get_unverified_header(token)
    assert (header["kid"], header["jku"]) == ("evil", "http://x")
    assert "exp" not in jwt.decode(token, options={"verify_signature": False})


async def test_rotate_over_http(kc: Keycloak) -> None:
    """`POST /_emulator/realms/{realm}/rotate-key` publishes a second signing key."""
    await kc.post("/_emulator/realms/nerc/rotate-key", [])
    certs = await kc.get("/realms/nerc/protocol/openid-connect/certs")
    assert [k["use"] for k in certs.body["keys"]] == ["sig", "sig", "enc"]


def test_threaded_server_restarts_on_the_same_port() -> None:
    """`start_in_thread` serves for sync code and `restart()` keeps the port and the state."""
    emu = Emulator.from_files([DEMO])
    handle = EmulatorServer.start_in_thread(emu, host="127.0.0.1", port=0)
    try:
        port = handle.port
        handle.restart()
        assert handle.port == port and handle.base_url == f"http://127.0.0.1:{port}"
        import urllib.request

        url = f"{handle.base_url}/realms/nerc/.well-known/openid-configuration"
        with urllib.request.urlopen(url) as resp:  # noqa: S310 - loopback http
            assert resp.status == 200
    finally:
        handle.close()


def test_many_realms_from_many_files() -> None:
    """`from_files` loads every file's realm next to `master`."""
    example = Path(__file__).resolve().parents[3] / "policies" / "example-nerc.yaml"
    emu = Emulator.from_files([DEMO])
    assert set(emu.realms) == {"master", "nerc"}
    emu.load_policies(example)
    assert emu.realm("nerc").client_by_client_id("ai4cloudops") is not None


def test_cli_refuses_a_broken_file(tmp_path: Path) -> None:
    """`main` exits 2 and prints file:line when a policies file has errors."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("realm: r\nhub: h\nresource_server: {client_id: c}\nclusters: {}\n")
    assert main([str(bad)]) == 2
