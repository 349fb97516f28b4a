"""Foundation: route table default deny, error envelope, the upstream request built not copied,
upstream failures mapped to 502/504, streaming without buffering."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests

from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.certs import Pki
from proxy_demo.prometheus import PrometheusServer
from tests.support.proc import ProxyProcess
from tests.support.proxy_server import ProxyServer, free_port
from tests.support.stack import ProxyFactory, TokenFor, proxy_environ
from tests.support.stub_upstream import StubUpstream

QUERY = 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",namespace="team-a"}'


def _is_envelope(r: requests.Response, status: int, error_type: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "error" and isinstance(body["error"], str)
    if error_type:
        assert body["errorType"] == error_type


@pytest.fixture
def stub(pki: Pki) -> Iterator[StubUpstream]:
    """A recording TLS upstream requiring the PKI's client certificate."""
    server = StubUpstream(pki).start()
    yield server
    server.stop()


def test_unknown_path_is_404_envelope(proxy_server: ProxyServer) -> None:
    """Anything outside the route table is a 404 in Prometheus' envelope, never forwarded."""
    for path in ("/api/v1/admin/tsdb/delete_series", "/api/v2/alerts", "/graph", "/api/v1/query/x"):
        _is_envelope(requests.get(proxy_server.base_url + path, timeout=10), 404, "not_found")


def test_wrong_method_is_405_with_allow(proxy_server: ProxyServer) -> None:
    """A known path with another method is 405 with `Allow`, in the envelope."""
    r = requests.delete(proxy_server.base_url + "/api/v1/query", timeout=10)
    _is_envelope(r, 405)
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    r = requests.post(proxy_server.base_url + "/api/v1/rules", timeout=10)
    _is_envelope(r, 405)


def test_root_needs_credentials_unless_anonymous(
    proxy_server: ProxyServer, proxy_factory: ProxyFactory, token_for: TokenFor
) -> None:
    """`GET /`: 401 without or with wrong credentials, 200 with a token; PROXY_ROOT_ANONYMOUS=true: 200."""
    url = proxy_server.base_url + "/"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("researcher-team-a", "wrong"), timeout=10).status_code == 401
    ok = requests.get(url, headers={"Authorization": f"Bearer {token_for('alice')}"}, timeout=10)
    assert ok.status_code == 200 and "prom-keycloak-proxy" in ok.text
    anonymous = proxy_factory(PROXY_ROOT_ANONYMOUS="true")
    assert requests.get(anonymous.base_url + "/", timeout=10).status_code == 200


def test_missing_credentials_is_401_bearer(proxy_server: ProxyServer) -> None:
    """No credentials: 401 with `WWW-Authenticate: Bearer`, never Basic."""
    r = requests.get(proxy_server.base_url + "/api/v1/query", params={"query": QUERY}, timeout=10)
    _is_envelope(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")


def test_credentials_never_reach_upstream(
    stub: StubUpstream, proxy_factory: ProxyFactory, token_for: TokenFor
) -> None:
    """Authorization, Cookie, X-Id-Token and tenancy headers are dropped; the path is joined to the base."""
    proxy = proxy_factory(**stub.env())
    token = token_for("alice")
    r = requests.post(
        proxy.base_url + "/api/v1/query?extra=1",
        data={"query": QUERY, "time": "4"},
        headers={
            "Authorization": f"Bearer {token}",
            "Cookie": "grafana_session=abc",
            "X-Id-Token": "id",
            "THANOS-TENANT": "other",
            "X-Scope-OrgID": "other",
            "X-Request-Id": "req-123",
            "X-Custom": "nope",
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert "Set-Cookie" not in r.headers and "WWW-Authenticate" not in r.headers
    assert r.headers["X-Request-Id"] == "req-123"
    seen = stub.seen[-1]
    lowered = {k.lower(): v for k, v in seen.headers.items()}
    for name in ("authorization", "cookie", "x-id-token", "thanos-tenant", "x-scope-orgid", "x-custom"):
        assert name not in lowered, name
    assert token not in str(seen.headers) and token.encode() not in seen.body
    assert lowered["x-request-id"] == "req-123"
    assert seen.path == "/api/metrics/v1/default/api/v1/query"
    assert seen.query == "extra=1"
    assert seen.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert b"time=4" in seen.body and b"query=" in seen.body


def test_foreign_bodies_are_415(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """Multipart, non-UTF-8 charsets and encoded bodies are refused, never interpreted."""
    auth = {"Authorization": f"Bearer {token_for('alice')}"}
    url = proxy_server.base_url + "/api/v1/query"
    cases = [
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/x-www-form-urlencoded; charset=cp037"},
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
        {"Content-Type": "application/json"},
    ]
    for headers in cases:
        r = requests.post(url, data=b"query=up", headers={**auth, **headers}, timeout=10)
        _is_envelope(r, 415)


def test_empty_post_body_with_any_type_is_fine(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """prometheus-api-client POSTs an empty body: the URL's query is used."""
    r = requests.post(
        proxy_server.base_url + "/api/v1/query",
        params={"query": QUERY},
        headers={"Authorization": f"Bearer {token_for('alice')}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


def test_duplicate_query_is_400(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """`query` in both URL and body, or repeated, is refused rather than guessed."""
    auth = {"Authorization": f"Bearer {token_for('alice')}"}
    url = proxy_server.base_url + "/api/v1/query"
    r = requests.post(url, params={"query": QUERY}, data={"query": "up"}, headers=auth, timeout=10)
    _is_envelope(r, 400, "bad_data")
    r = requests.get(url + "?query=up&query=up", headers=auth, timeout=10)
    _is_envelope(r, 400, "bad_data")


def test_oversized_body_and_url_are_413(proxy_server: ProxyServer, token_for: TokenFor) -> None:
    """Bodies over PROXY_MAX_BODY_BYTES and URLs over PROXY_MAX_URL_BYTES are 413."""
    auth = {"Authorization": f"Bearer {token_for('alice')}"}
    url = proxy_server.base_url + "/api/v1/query"
    r = requests.post(url, data={"query": "x" * 2_000_000}, headers=auth, timeout=10)
    assert r.status_code == 413
    r = requests.get(url + "?query=" + "x" * 70_000, headers=auth, timeout=10)
    assert r.status_code == 413


def test_upstream_down_is_502(proxy_factory: ProxyFactory, token_for: TokenFor) -> None:
    """Nothing listening upstream: 502 `unavailable` in the envelope."""
    proxy = proxy_factory(PROXY_PROMETHEUS_BASE_URL=f"https://127.0.0.1:{free_port()}")
    r = requests.get(
        proxy.base_url + "/api/v1/query",
        params={"query": QUERY},
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        timeout=30,
    )
    _is_envelope(r, 502, "unavailable")


def test_upstream_hanging_is_504_within_timeout(
    stub: StubUpstream, proxy_factory: ProxyFactory, token_for: TokenFor
) -> None:
    """An upstream that never answers: 504 `timeout` within PROXY_PROMETHEUS_TIMEOUT."""
    stub.mode = "hang"
    proxy = proxy_factory(**stub.env(), PROXY_PROMETHEUS_TIMEOUT="1s")
    started = time.monotonic()
    r = requests.get(
        proxy.base_url + "/api/v1/query",
        params={"query": QUERY},
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    _is_envelope(r, 504, "timeout")
    assert elapsed < 3.0


def test_upstream_refusing_proxy_credentials_is_502(
    stub: StubUpstream, proxy_factory: ProxyFactory, token_for: TokenFor
) -> None:
    """Upstream 401 (e.g. an expired client certificate) is a 502, so Grafana users stay logged in."""
    stub.mode = "unauthorized"
    proxy = proxy_factory(**stub.env())
    r = requests.get(
        proxy.base_url + "/api/v1/query",
        params={"query": QUERY},
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        timeout=30,
    )
    _is_envelope(r, 502, "unavailable")
    assert "WWW-Authenticate" not in r.headers


def test_prometheus_without_client_cert_is_refused(
    proxy_factory: ProxyFactory, token_for: TokenFor, prometheus: object
) -> None:
    """A proxy configured without the client certificate cannot read the real Prometheus (502)."""
    proxy = proxy_factory(PROXY_PROMETHEUS_TLS_CERT="", PROXY_PROMETHEUS_TLS_KEY="")
    r = requests.get(
        proxy.base_url + "/api/v1/query",
        params={"query": QUERY},
        headers={"Authorization": f"Bearer {token_for('alice')}"},
        timeout=30,
    )
    assert r.status_code == 502, r.text


def test_50mb_response_streams_with_bounded_rss(
    stub: StubUpstream,
    emulator_server: ThreadedEmulatorServer,
    token_for: TokenFor,
    tmp_path: Path,
    prometheus: PrometheusServer,
) -> None:
    """A 50 MB upstream answer streams through the proxy process with RSS growth under 20 MB."""
    stub.mode = "big"
    env = proxy_environ(prometheus, emulator_server.base_url, **stub.env())
    proc = ProxyProcess(env, tmp_path / "proxy.log").wait_ready()
    try:
        ps = psutil.Process(proc.proc.pid)
        token = token_for("alice")
        warm = requests.get(proc.base_url + "/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert warm.status_code == 200
        before = ps.memory_info().rss
        peak = before
        received = 0
        with requests.get(
            proc.base_url + "/api/v1/query",
            params={"query": QUERY},
            headers={"Authorization": f"Bearer {token}"},
            stream=True,
            timeout=60,
        ) as r:
            assert r.status_code == 200
            for chunk in r.iter_content(256 * 1024):
                received += len(chunk)
                peak = max(peak, ps.memory_info().rss)
        assert received == 50 * 1024 * 1024
        assert peak - before < 20 * 1024 * 1024, (before, peak)
    finally:
        assert proc.stop() == 0


def test_client_certificate_is_reloaded_without_restart(
    stub: StubUpstream, proxy_factory: ProxyFactory, token_for: TokenFor, pki_factory: Callable[[], Pki]
) -> None:
    """A client certificate replaced on disk is used for new upstream connections, no restart."""
    pki: Pki = stub.pki
    files = pki_factory()
    # Start with an expired certificate in files the proxy watches: the upstream refuses it.
    expired = files.issue(
        "watched",
        "proxy-client",
        ca=pki.ca,
        not_before=dt.datetime(2020, 1, 1),
        not_after=dt.datetime(2020, 1, 2),
    )
    env = {
        **stub.env(),
        "PROXY_PROMETHEUS_TLS_CERT": str(expired.cert),
        "PROXY_PROMETHEUS_TLS_KEY": str(expired.key),
        "PROXY_CERT_RELOAD_INTERVAL": "100ms",
    }
    proxy = proxy_factory(**env)
    headers = {"Authorization": f"Bearer {token_for('alice')}"}
    url = proxy.base_url + "/api/v1/query"
    assert requests.get(url, params={"query": QUERY}, headers=headers, timeout=30).status_code == 502
    files.issue("watched", "proxy-client", ca=pki.ca)  # a valid one, written to the same paths
    deadline = time.monotonic() + 10
    status = 0
    while time.monotonic() < deadline and status != 200:
        time.sleep(0.2)
        status = requests.get(url, params={"query": QUERY}, headers=headers, timeout=30).status_code
    assert status == 200


def test_listener_tls(
    emulator_server: ThreadedEmulatorServer,
    prometheus: PrometheusServer,
    pki: Pki,
    tmp_path: Path,
    token_for: TokenFor,
) -> None:
    """With PROXY_TLS_CERT/KEY the proxy serves HTTPS (Basic secrets never cross the network in clear)."""
    env = proxy_environ(
        prometheus,
        emulator_server.base_url,
        PROXY_TLS_CERT=str(pki.server_cert),
        PROXY_TLS_KEY=str(pki.server_key),
    )
    proc = ProxyProcess(env, tmp_path / "proxy.log").wait_ready()
    try:
        https = proc.base_url.replace("http://", "https://")
        r = requests.get(
            https + "/api/v1/query",
            params={"query": QUERY},
            verify=str(pki.ca_cert),
            headers={"Authorization": f"Bearer {token_for('alice')}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(proc.base_url + "/", timeout=5)
    finally:
        assert proc.stop() == 0
