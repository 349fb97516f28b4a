"""Several hubs, one upstream each: isolation, outages and certificate rotation per hub.

Each hub is a recording TLS stub with its own CA and client certificate: a request for one hub
must reach only that hub's upstream, one hub's outage must leave the others serving and the
proxy ready, and one hub's rotated certificate must be picked up without touching the others.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from keycloak_emulator import ThreadedEmulatorServer
from proxy.services import SERVICES
from proxy_demo.certs import Pki
from tests.support.hubs import hub_entry, hubs_config, hubs_environ
from tests.support.proxy_server import ProxyServer, make_settings
from tests.support.stub_upstream import StubUpstream

# The audit writer thread renders every request's event: an exception there must fail the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

HUBS = ("moc", "innabox-dev", "open-sovereign-ai-cloud")
QUERY = "DCGM_FI_DEV_GPU_UTIL"
PATH = "/api/metrics/v1/default"


@pytest.fixture
def stubs(pki_factory: Callable[[], Pki]) -> Iterator[dict[str, StubUpstream]]:
    """One recording upstream per hub, each with its own PKI (unrelated CAs)."""
    servers = {hub: StubUpstream(pki_factory()).start() for hub in HUBS}
    yield servers
    for server in servers.values():
        server.stop()


def _proxy(
    tmp_path: Path, emulator: ThreadedEmulatorServer, entries: list[dict[str, object]], **env: str
) -> ProxyServer:
    """A proxy for these hub entries (default: the first), started."""
    config = hubs_config(tmp_path, entries, default_hub=str(entries[0]["name"]))
    return ProxyServer(make_settings(hubs_environ(emulator.base_url, config, **env))).start()


def _query(proxy: ProxyServer, hub: str, token: str) -> requests.Response:
    """An instant query on one hub's path."""
    return requests.get(
        f"{proxy.base_url}/{hub}/api/v1/query",
        params={"query": QUERY},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_query_reaches_only_its_hubs_upstream(
    stubs: dict[str, StubUpstream],
    tmp_path: Path,
    hubs_emulator_server: ThreadedEmulatorServer,
    hubs_token_for: Callable[[str], str],
) -> None:
    """Each hub path sends to its own upstream, under the upstream's base path, and nowhere else."""
    proxy = _proxy(tmp_path, hubs_emulator_server, [hub_entry(h, s, PATH) for h, s in stubs.items()])
    try:
        token = hubs_token_for("frank")
        for i, hub in enumerate(HUBS):
            assert _query(proxy, hub, token).status_code == 200
            for other, stub in stubs.items():
                expected = 1 if HUBS.index(other) <= i else 0
                assert len(stub.seen) == expected, (hub, other)
            assert stubs[hub].seen[-1].path == PATH + "/api/v1/query"
        plain = requests.get(
            proxy.base_url + "/api/v1/query",
            params={"query": QUERY},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert plain.status_code == 200
        assert [len(s.seen) for s in stubs.values()] == [2, 1, 1]  # the default hub: moc
        for stub in stubs.values():
            assert "Authorization" not in stub.seen[-1].headers
    finally:
        proxy.stop()


def test_a_hub_without_grants_never_reaches_its_upstream(
    stubs: dict[str, StubUpstream],
    tmp_path: Path,
    hubs_emulator_server: ThreadedEmulatorServer,
    hubs_token_for: Callable[[str], str],
) -> None:
    """dave holds HUB-moc only: innabox-dev answers 403 and its upstream sees nothing."""
    proxy = _proxy(tmp_path, hubs_emulator_server, [hub_entry(h, s) for h, s in stubs.items()])
    try:
        token = hubs_token_for("dave")
        assert _query(proxy, "moc", token).status_code == 200
        assert _query(proxy, "innabox-dev", token).status_code == 403
        assert [len(s.seen) for s in stubs.values()] == [1, 0, 0]
    finally:
        proxy.stop()


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_one_hub_down_leaves_the_others_serving_and_the_proxy_ready(
    stubs: dict[str, StubUpstream],
    tmp_path: Path,
    hubs_emulator_server: ThreadedEmulatorServer,
    hubs_token_for: Callable[[str], str],
) -> None:
    """A hub whose upstream refuses connections answers 502 in the envelope; others 200; /readyz 200."""
    entries = [hub_entry(h, s) for h, s in stubs.items()]
    entries[1]["prometheus_base_url"] = f"https://127.0.0.1:{_closed_port()}"
    proxy = _proxy(tmp_path, hubs_emulator_server, entries)
    try:
        token = hubs_token_for("frank")
        down = _query(proxy, "innabox-dev", token)
        assert down.status_code == 502
        assert down.json() == {
            "status": "error",
            "errorType": "unavailable",
            "error": "upstream is unreachable",
        }
        for hub in ("moc", "open-sovereign-ai-cloud"):
            assert _query(proxy, hub, token).status_code == 200
        for url in (proxy.base_url, proxy.metrics_url):
            assert requests.get(url + "/readyz", timeout=10).status_code == 200
    finally:
        proxy.stop()


def test_one_hubs_certificate_rotation_is_picked_up_and_the_others_are_untouched(
    stubs: dict[str, StubUpstream],
    tmp_path: Path,
    hubs_emulator_server: ThreadedEmulatorServer,
    hubs_token_for: Callable[[str], str],
    pki_factory: Callable[[], Pki],
) -> None:
    """innabox-dev starts with an expired client certificate (502); a valid one written to the same
    files is used without restart, while the other hubs keep their upstream sessions."""
    target = stubs["innabox-dev"]
    files = pki_factory()
    expired = files.issue(
        "watched",
        "proxy-client",
        ca=target.pki.ca,
        not_before=dt.datetime(2020, 1, 1),
        not_after=dt.datetime(2020, 1, 2),
    )
    entries = [hub_entry(h, s) for h, s in stubs.items()]
    entries[1] |= {"prometheus_tls_cert": str(expired.cert), "prometheus_tls_key": str(expired.key)}
    proxy = _proxy(tmp_path, hubs_emulator_server, entries, PROXY_CERT_RELOAD_INTERVAL="100ms")
    try:
        token = hubs_token_for("frank")
        assert _query(proxy, "innabox-dev", token).status_code == 502
        for hub in ("moc", "open-sovereign-ai-cloud"):
            assert _query(proxy, hub, token).status_code == 200
        assert proxy.app is not None
        views = proxy.app[SERVICES].by_hub
        before = {hub: views[hub].upstream._session for hub in HUBS}
        files.issue("watched", "proxy-client", ca=target.pki.ca)  # valid, same paths
        deadline, status = time.monotonic() + 10, 0
        while time.monotonic() < deadline and status != 200:
            time.sleep(0.2)
            status = _query(proxy, "innabox-dev", token).status_code
        assert status == 200
        for hub in ("moc", "open-sovereign-ai-cloud"):
            assert _query(proxy, hub, token).status_code == 200
        after = {hub: views[hub].upstream._session for hub in HUBS}
        assert after["innabox-dev"] is not before["innabox-dev"]
        assert all(after[h] is before[h] for h in ("moc", "open-sovereign-ai-cloud"))
    finally:
        proxy.stop()


def test_no_default_hub_means_404_with_a_hint_on_the_plain_api(
    stubs: dict[str, StubUpstream],
    tmp_path: Path,
    hubs_emulator_server: ThreadedEmulatorServer,
    hubs_token_for: Callable[[str], str],
) -> None:
    """Two hubs and no default_hub: /api/v1/query is 404 naming the hub paths; hub paths work."""
    entries = [hub_entry(h, s) for h, s in stubs.items()]
    cfg = hubs_config(tmp_path, entries)
    proxy = ProxyServer(make_settings(hubs_environ(hubs_emulator_server.base_url, cfg))).start()
    try:
        token = hubs_token_for("frank")
        plain = requests.get(
            proxy.base_url + "/api/v1/query",
            params={"query": QUERY},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert plain.status_code == 404
        assert plain.json()["errorType"] == "not_found"
        assert "/moc/api/v1/query" in plain.json()["error"]
        assert _query(proxy, "moc", token).status_code == 200
        assert sum(len(s.seen) for s in stubs.values()) == 1
    finally:
        proxy.stop()
