"""Fair use against the running proxy: the optional per-subject rate (429 + Retry-After), the
per-subject concurrency cap (queued), range/step caps (400), and Grafana's health check and
exemplar probe still passing."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from keycloak_emulator import Emulator
from proxy_demo.prometheus import PrometheusServer
from tests.support.faults import FaultProxy
from tests.support.stack import CLIENT_SECRETS, REALM, ProxyFactory, TokenFor

pytestmark = [pytest.mark.prometheus]
Q = {"query": 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'}


def _get(base: str, token: str, params: dict[str, str] | None = None,
         path: str = "/api/v1/query") -> requests.Response:
    return requests.get(f"{base}{path}", params=params or Q,
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_rate_limit_per_subject_is_429_with_retry_after(
    proxy_factory: ProxyFactory, token_for: TokenFor
) -> None:
    """Past the burst a subject gets 429 + Retry-After; another subject is unaffected."""
    proxy = proxy_factory(PROXY_RATE_PER_SUBJECT="1", PROXY_RATE_BURST_PER_SUBJECT="5")
    alice, carol = token_for("alice"), token_for("carol")
    codes = [_get(proxy.base_url, alice) for _ in range(8)]
    limited = [r for r in codes if r.status_code == 429]
    assert [r.status_code for r in codes[:5]] == [200] * 5
    assert limited, [r.status_code for r in codes]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["status"] == "error"
    assert _get(proxy.base_url, carol).status_code == 200
    time.sleep(int(limited[0].headers["Retry-After"]) + 0.1)
    assert _get(proxy.base_url, alice).status_code == 200


def test_concurrency_limit_per_subject_queues_instead_of_refusing(
    proxy_factory: ProxyFactory, token_for: TokenFor, prometheus: PrometheusServer
) -> None:
    """With upstream answers slowed down and 2 in flight per subject, 8 parallel requests of one
    subject all get 200, in at least 4 rounds (they queued), and another subject is served."""
    slow = FaultProxy(prometheus.port).start()
    slow.set("latency", delay=0.4)
    try:
        # Coalescing off: identical requests would share one upstream call (docs/caching.md).
        proxy = proxy_factory(PROXY_MAX_CONCURRENT_PER_SUBJECT="2", PROXY_COALESCE="false",
                              PROXY_PROMETHEUS_BASE_URL=f"https://{slow.url}")
        alice, carol = token_for("alice"), token_for("carol")
        assert _get(proxy.base_url, alice).status_code == 200  # warm the decision cache
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _get(proxy.base_url, alice), range(8)))
        took = time.monotonic() - started
        assert [r.status_code for r in answers] == [200] * 8
        assert took >= 4 * 0.4, took
        assert _get(proxy.base_url, carol).status_code == 200
    finally:
        slow.stop()


@pytest.mark.parametrize(("span", "step", "expected"), [
    (3600, "15", 200), (86400, "5", 400), (90 * 86400, "3600", 200), (31 * 86400, "3600", 200),
    (11000 * 60, "60", 200), (11001 * 60, "60", 400),
])
def test_range_and_step_caps(
    proxy_server_url: str, token_for: TokenFor, span: int, step: str, expected: int
) -> None:
    """query_range above 11,000 points per series is a 400 bad_data; a 90-day span is fine."""
    end = int(time.time())
    r = _get(proxy_server_url, token_for("alice"),
             {**Q, "start": str(end - span), "end": str(end), "step": step}, "/api/v1/query_range")
    assert r.status_code == expected, r.text[:200]
    if expected == 400:
        assert r.json()["errorType"] == "bad_data"


@pytest.fixture
def proxy_server_url(proxy_server: object) -> str:
    """The shared proxy's base URL."""
    return str(proxy_server.base_url)  # type: ignore[attr-defined]


def test_grafana_health_check_and_exemplar_probe_pass(
    proxy_server_url: str, token_for: TokenFor
) -> None:
    """`POST query=1+1&time=4` and the millisecond exemplar probe still pass under the caps."""
    auth = {"Authorization": f"Bearer {token_for('alice')}"}
    r = requests.post(f"{proxy_server_url}/api/v1/query", data={"query": "1+1", "time": "4"},
                      headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["result"][1] == "2"
    r = requests.post(f"{proxy_server_url}/api/v1/query_exemplars",
                      data={"query": "test", "start": "1767267012345", "end": "1767268812345"},
                      headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.get(f"{proxy_server_url}/api/v1/status/buildinfo", headers=auth, timeout=30)
    assert r.status_code == 200


def test_guessing_does_not_lock_out_the_real_basic_client(
    proxy_factory: ProxyFactory, emu: Emulator
) -> None:
    """Basic auth on the real stack: after its token expired and 12 wrong guesses on its client
    id (the last two throttled with 429), the client's correct secret gets 200."""
    realm = emu.realm(REALM)
    lifespan, realm.token_lifespan = realm.token_lifespan, 4  # the proxy reuses it for 2 s
    try:
        proxy = proxy_factory()
        client = "researcher-team-a"

        def ask(secret: str) -> requests.Response:
            return requests.get(f"{proxy.base_url}/api/v1/query", params=Q, auth=(client, secret),
                                timeout=30)

        assert ask(CLIENT_SECRETS[client]).status_code == 200
        guesses = [ask(f"guess-{i}") for i in range(12)]
        assert [r.status_code for r in guesses] == [401] * 10 + [429] * 2
        assert all(int(r.headers["Retry-After"]) >= 1 for r in guesses[10:])
        time.sleep(2.5)
        assert ask(CLIENT_SECRETS[client]).status_code == 200
    finally:
        realm.token_lifespan = lifespan


def test_max_lookback_bounds_the_whole_reach_when_set(
    proxy_factory: ProxyFactory, token_for: TokenFor
) -> None:
    """With PROXY_MAX_LOOKBACK=60d, a 31-day range of `rate(…[30d])` (61 days read) is a 400
    naming the option, a 29-day one is answered; an offset counts too."""
    proxy = proxy_factory(PROXY_MAX_LOOKBACK="60d")
    token = token_for("alice")
    sel = 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'
    end = int(time.time())

    def ask(query: str, days: int) -> requests.Response:
        return _get(proxy.base_url, token, {"query": query, "start": str(end - days * 86400),
                                            "end": str(end), "step": "3600"}, "/api/v1/query_range")

    refused = ask(f"rate({sel}[30d])", 31)
    assert refused.status_code == 400 and "PROXY_MAX_LOOKBACK" in refused.json()["error"]
    assert ask(f"rate({sel}[30d])", 29).status_code == 200
    assert ask(f"{sel} offset 59d", 2).status_code == 400


def test_label_name_with_a_trailing_newline_is_refused(proxy_server_url: str, token_for: TokenFor) -> None:
    """`/api/v1/label/cluster%0A/values` is a 400 (the name is matched in full)."""
    r = _get(proxy_server_url, token_for("alice"), {}, "/api/v1/label/cluster%0A/values")
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    assert _get(proxy_server_url, token_for("alice"), {}, "/api/v1/label/cluster/values").status_code == 200


def test_20000_match_selectors_are_refused_at_once(proxy_server_url: str, token_for: TokenFor) -> None:
    """A POST of 20,000 `match[]` (≈ 700 KB, under the body limit) is a 400 within a second."""
    body = "&".join(f"match[]=up%7Bi%3D%22{i:05d}%22%7D" for i in range(20000))
    started = time.monotonic()
    r = requests.post(f"{proxy_server_url}/api/v1/series", data=body, timeout=30,
                      headers={"Authorization": f"Bearer {token_for('alice')}",
                               "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"
    assert time.monotonic() - started < 1.0
    few = "&".join(f"match[]=up%7Bi%3D%22{i:05d}%22%7D" for i in range(101))
    r = requests.post(f"{proxy_server_url}/api/v1/series", data=few, timeout=30,
                      headers={"Authorization": f"Bearer {token_for('alice')}",
                               "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "PROXY_MAX_MATCH_SELECTORS" in r.json()["error"]
