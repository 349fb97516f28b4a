"""Fault injection between the proxy and Keycloak, and between the proxy and Prometheus.

A `FaultProxy` (tests/support/faults.py) sits on each back-channel. Every case checks: bounded
response time, the right status, no series outside the caller's grant, and recovery without a
restart once the fault ends. Run with `-s` to see the table (case, status, time, recovery).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from keycloak_emulator import Emulator, EmulatorServer, ThreadedEmulatorServer
from keycloak_emulator.keys import SigningKey
from proxy_demo.certs import Pki
from proxy_demo.policy import DEMO_POLICY
from proxy_demo.prometheus import PrometheusServer
from tests.support.faults import FaultProxy, http_response
from tests.support.oracle import Grant, leaked_series
from tests.support.proxy_server import ProxyServer, make_settings
from tests.support.stack import CLIENT_SECRETS, REALM, proxy_environ

pytestmark = [pytest.mark.prometheus]

ALICE = Grant.of_projects("nerc-ocp-prod", "team-a")
UNSCOPED = "DCGM_FI_DEV_GPU_UTIL"  # narrowed to alice's grant
UP_TIMEOUT, KC_TIMEOUT = 2.0, 1.0
SLACK = 1.5  # scheduling slack on a loaded 2-core machine
RECOVERY_LIMIT = 15.0
TABLE: list[tuple[str, str, float, str]] = []


@dataclass
class Stack:
    """A private emulator, two fault proxies and a proxy routed through them."""

    emu: Emulator
    emu_server: ThreadedEmulatorServer
    kc_fault: FaultProxy
    up_fault: FaultProxy
    proxy: ProxyServer
    pki: Pki

    def token(self, user: str = "alice") -> str:
        """A fresh token (new hash, so no decision cache hit: Keycloak is asked again)."""
        return self.emu.mint(REALM, user=user)


@pytest.fixture(scope="module")
def stack(prometheus: PrometheusServer, pki: Pki) -> Iterator[Stack]:
    """Everything the fault cases share; the emulator is private so it can be broken freely."""
    emu = Emulator.from_files([DEMO_POLICY])
    emu_server = EmulatorServer.start_in_thread(emu)
    kc_fault = FaultProxy(emu_server.port).start()
    up_fault = FaultProxy(prometheus.port).start()
    # Keycloak's `hostname`: issuer and jwks_uri name the fault proxy, so every call crosses it
    emu.hostname = f"http://{kc_fault.url}"
    env = proxy_environ(
        prometheus,
        f"http://{kc_fault.url}",
        PROXY_PROMETHEUS_BASE_URL=f"https://{up_fault.url}",
        PROXY_PROMETHEUS_TIMEOUT=f"{UP_TIMEOUT:g}s",
        PROXY_PROMETHEUS_CONNECT_TIMEOUT="1s",
        PROXY_AUTH_TIMEOUT=f"{KC_TIMEOUT:g}s",
    )
    proxy = ProxyServer(make_settings(env)).start()
    _wait_ready(proxy)
    try:
        yield Stack(emu, emu_server, kc_fault, up_fault, proxy, pki)
    finally:
        proxy.stop()
        kc_fault.stop()
        up_fault.stop()
        emu_server.close()
        _print_table()


def _wait_ready(proxy: ProxyServer) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if requests.get(f"{proxy.base_url}/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError("proxy never became ready")


def _print_table() -> None:
    if not TABLE:
        return
    print("\n\nfault injection results")
    print(f"{'case':<34} {'status':<14} {'time':>7}  recovery")
    for case, status, elapsed, recovery in TABLE:
        print(f"{case:<34} {status:<14} {elapsed:6.2f}s  {recovery}")


def _query(stack: Stack, *, token: str | None = None, path: str = "/api/v1/query",
           basic: tuple[str, str] | None = None) -> tuple[int, bytes, float, str]:
    """Alice's (or Basic) request; returns status, body, seconds, and an outcome label."""
    headers = {} if basic else {"Authorization": f"Bearer {token or stack.token()}"}
    params = {"query": UNSCOPED, "time": str(int(time.time()))} if path.endswith("query") else {}
    started = time.monotonic()
    try:
        r = requests.get(f"{stack.proxy.base_url}{path}", params=params, headers=headers,
                         auth=basic, timeout=10)
        status, body, outcome = r.status_code, r.content, str(r.status_code)
    except requests.exceptions.ChunkedEncodingError:
        status, body, outcome = 200, b"", "200+cut"
    return status, body, time.monotonic() - started, outcome


def _assert_no_leak(status: int, body: bytes, grant: Grant = ALICE) -> None:
    """A 200 answer holds only visible series; an error answer holds no series at all."""
    if status == 200 and body:
        doc = json.loads(body)
        data = doc.get("data")
        if isinstance(data, dict) and "result" in data:
            assert not leaked_series([r["metric"] for r in data["result"]], grant)
    elif body:
        assert b'"result"' not in body and b"nerc-ocp-test" not in body


def _recover(stack: Stack, check: Callable[[], tuple[int, bytes, float, str]]) -> float:
    """Seconds until the request succeeds again (no restart); fails after RECOVERY_LIMIT."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < RECOVERY_LIMIT:
        status, body, _, outcome = check()
        if status == 200:
            _assert_no_leak(status, body)
            return time.monotonic() - started
        last = f"{outcome} {body[:200]!r}"
        time.sleep(0.2)
    raise AssertionError(f"no recovery within {RECOVERY_LIMIT}s; last answer {last}")


def _case(stack: Stack, name: str, expected: set[str], bound: float,
          request: Callable[[], tuple[int, bytes, float, str]],
          heal: Callable[[], None], check: Callable[[], tuple[int, bytes, float, str]] | None = None,
          *, envelope: bool = True) -> None:
    """Run one fault case: expected outcome within `bound` seconds, no leak, then recovery."""
    try:
        status, body, elapsed, outcome = request()
    finally:
        heal()
    recovery = _recover(stack, check or (lambda: _query(stack)))
    TABLE.append((name, outcome, elapsed, f"{recovery:.2f}s"))
    _assert_no_leak(status, body)
    assert outcome in expected, f"{name}: got {outcome} {body[:300]!r}, expected {expected}"
    assert elapsed <= bound, f"{name}: took {elapsed:.2f}s > {bound:.2f}s"
    if status >= 400 and body and envelope:
        doc = json.loads(body)
        assert doc["status"] == "error", doc


def _other_ca_server_context(pki: Pki) -> object:
    import ssl

    leaf = pki.other_ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    return ctx


# ------------------------------------------------------------------ proxy → Prometheus


UPSTREAM_CASES: list[tuple[str, dict[str, object], set[str], float]] = [
    ("upstream latency 0.1s", {"mode": "latency", "delay": 0.1}, {"200"}, 2.0),
    ("upstream latency 5s", {"mode": "latency", "delay": 5.0}, {"504"}, UP_TIMEOUT + SLACK),
    ("upstream reset", {"mode": "reset"}, {"502"}, SLACK),
    ("upstream half-open", {"mode": "half_open"}, {"504"}, UP_TIMEOUT + SLACK),
    ("upstream TLS garbage", {"mode": "garbage"}, {"502"}, SLACK),
    ("upstream truncated stream", {"mode": "truncate", "limit": 2500}, {"502", "504", "200+cut"},
     UP_TIMEOUT + SLACK),
]


@pytest.mark.parametrize(("name", "fault", "expected", "bound"), UPSTREAM_CASES,
                         ids=[c[0] for c in UPSTREAM_CASES])
def test_upstream_transport_faults(stack: Stack, name: str, fault: dict[str, object],
                                   expected: set[str], bound: float) -> None:
    """Transport faults to Prometheus: bounded 502/504 (never a hang), no leak, recovery."""
    token = stack.token()
    mode = str(fault.pop("mode"))
    stack.up_fault.set(mode, **fault)  # type: ignore[arg-type]
    _case(stack, name, expected, bound, lambda: _query(stack, token=token),
          lambda: stack.up_fault.set("pass"))


def _tls_responder(stack: Stack, response: bytes, ctx: object | None = None) -> None:
    stack.up_fault.set("respond", response=response,
                       ssl_context=ctx or stack.pki.server_context())


HTTP_UPSTREAM_CASES: list[tuple[str, bytes, str, set[str]]] = [
    ("upstream 503 (passed through)",
     http_response(503, b"service unavailable\n", content_type="text/plain"),
     "/api/v1/query", {"503"}),
    ("upstream 500 JSON (passed through)",
     http_response(500, b'{"status":"error","errorType":"internal","error":"boom"}'),
     "/api/v1/query", {"500"}),
    ("upstream 401 (proxy credentials)", http_response(401, b"unauthorized"), "/api/v1/query",
     {"502"}),
    # regression: the body error escaped `stream()` and the caller hung on the missing bytes
    ("upstream truncated JSON, query",
     http_response(200, b'{"status":"success","data":{"resultType":"vector","res',
                   declared_length=4000), "/api/v1/query", {"200+cut", "502"}),
    ("upstream truncated JSON, rules",
     http_response(200, b'{"status":"success","data":{"groups":[', declared_length=4000),
     "/api/v1/rules", {"502"}),
    ("upstream not JSON, alerts", http_response(200, b"<html>proxy error</html>"),
     "/api/v1/alerts", {"502"}),
]


@pytest.mark.parametrize(("name", "response", "path", "expected"), HTTP_UPSTREAM_CASES,
                         ids=[c[0] for c in HTTP_UPSTREAM_CASES])
def test_upstream_http_faults(stack: Stack, name: str, response: bytes, path: str,
                              expected: set[str]) -> None:
    """Bad HTTP answers from Prometheus: the docs/http.md status, bounded, no leak, recovery."""
    token = stack.token()
    _tls_responder(stack, response)
    _case(stack, name, expected, SLACK + 1, lambda: _query(stack, token=token, path=path),
          lambda: stack.up_fault.set("pass"), envelope="passed through" not in name)


def test_upstream_tls_wrong_certificate(stack: Stack) -> None:
    """A server certificate from an unrelated CA is a TLS failure: 502, then recovery."""
    token = stack.token()
    _tls_responder(stack, http_response(200, b'{"status":"success","data":{}}'),
                   _other_ca_server_context(stack.pki))
    _case(stack, "upstream TLS unknown CA", {"502"}, SLACK, lambda: _query(stack, token=token),
          lambda: stack.up_fault.set("pass"))


# ------------------------------------------------------------------ proxy → Keycloak


KC_CASES: list[tuple[str, dict[str, object], set[str], float]] = [
    ("keycloak latency 0.2s", {"mode": "latency", "delay": 0.2}, {"200"}, KC_TIMEOUT + SLACK),
    ("keycloak latency 3s", {"mode": "latency", "delay": 3.0}, {"503"}, KC_TIMEOUT + SLACK),
    ("keycloak reset", {"mode": "reset"}, {"503"}, SLACK),
    ("keycloak half-open", {"mode": "half_open"}, {"503"}, KC_TIMEOUT + SLACK),
    ("keycloak garbage", {"mode": "garbage"}, {"503"}, SLACK),
    ("keycloak truncated JSON", {"mode": "truncate", "limit": 160}, {"503"}, KC_TIMEOUT + SLACK),
]


@pytest.mark.parametrize(("name", "fault", "expected", "bound"), KC_CASES,
                         ids=[c[0] for c in KC_CASES])
def test_keycloak_transport_faults(stack: Stack, name: str, fault: dict[str, object],
                                   expected: set[str], bound: float) -> None:
    """Transport faults to Keycloak during the UMA call: bounded 503, never a guess, recovery."""
    token = stack.token()
    mode = str(fault.pop("mode"))
    stack.kc_fault.set(mode, **fault)  # type: ignore[arg-type]
    _case(stack, name, expected, bound, lambda: _query(stack, token=token),
          lambda: stack.kc_fault.set("pass"))


@pytest.mark.parametrize("status", [500, 502, 503, 400])
def test_keycloak_error_statuses(stack: Stack, status: int) -> None:
    """Keycloak 5xx (and a 4xx other than 401/403) on the UMA grant: 503, not cached."""
    token = stack.token()
    stack.emu.inject_fault("token.uma", status=status)
    _case(stack, f"keycloak UMA {status}", {"503"}, SLACK, lambda: _query(stack, token=token),
          stack.emu.clear_faults, check=lambda: _query(stack, token=token))


def test_keycloak_basic_auth_outage(stack: Stack) -> None:
    """Basic auth while Keycloak resets connections: 503 (not 401), recovery for the same pair."""
    pair = ("researcher-team-a", CLIENT_SECRETS["researcher-team-a"])
    stack.kc_fault.set("reset")
    _case(stack, "keycloak reset, Basic auth", {"503"}, SLACK,
          lambda: _query(stack, basic=pair), lambda: stack.kc_fault.set("pass"),
          check=lambda: _query(stack, basic=pair))


def test_keycloak_down_and_back(stack: Stack) -> None:
    """The emulator process stops (connection refused behind the proxy) and comes back."""
    stack.emu_server.stop()
    _case(stack, "keycloak down", {"503"}, SLACK, lambda: _query(stack),
          stack.emu_server.start)


def test_jwks_served_with_wrong_key(stack: Stack) -> None:
    """A new kid whose JWKS entry is another key: its tokens get 401; a correct new kid works."""
    realm = stack.emu.realm(REALM)
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = "rotated-but-wrong"
    realm.keys.insert(0, SigningKey(kid=kid, private_key=impostor))
    forged = stack.emu.mint(REALM, user="alice", key=signer, kid=kid)

    def heal() -> None:
        realm.keys[:] = [k for k in realm.keys if k.kid != kid]
        stack.emu.rotate_key(REALM)  # a properly published new key: tokens use its kid

    _case(stack, "JWKS with wrong key for kid", {"401"}, SLACK,
          lambda: _query(stack, token=forged), heal)
