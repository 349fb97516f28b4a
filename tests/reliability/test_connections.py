"""Connection hygiene on the real stack (docs: fair use, connections): thousands of silent or
half-sent connections are closed at the header timeout while normal traffic is served, and the
open-connection cap holds."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
import requests

from tests.support.proxy_server import ProxyServer
from tests.support.stack import ProxyFactory, TokenFor

pytestmark = [pytest.mark.prometheus]
Q = {"query": 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'}
HALF_HEAD = b"GET /api/v1/query HTTP/1.1\r\nHost: x\r\nX-Slow: a"


@contextmanager
def _flood(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` non-blocking connections, every other one sending half a request head."""
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            err = sock.connect_ex(("127.0.0.1", port))
            assert err in (0, errno.EINPROGRESS), err
            socks.append(sock)
            if i % 2:
                with suppress(BlockingIOError):
                    sock.send(HALF_HEAD)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed this connection (EOF or reset)."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _query(session: requests.Session, proxy: ProxyServer, token: str) -> tuple[int, float]:
    started = time.monotonic()
    r = session.get(f"{proxy.base_url}/api/v1/query", params=Q,
                    headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return r.status_code, time.monotonic() - started


def test_3000_idle_and_half_sent_connections_are_closed_at_the_header_timeout(
    proxy_factory: ProxyFactory, token_for: TokenFor
) -> None:
    """3,000 stuck connections: queries keep being answered fast, and all 3,000 are closed once
    the header timeout has passed."""
    timeout = 4.0
    proxy = proxy_factory(PROXY_HEADER_TIMEOUT=f"{timeout:g}s")
    token = token_for("alice")
    session = requests.Session()
    assert _query(session, proxy, token)[0] == 200
    with _flood(proxy.port, 3000) as socks:
        deadline = time.monotonic() + 10
        while proxy.site.open_connections < 3000 and time.monotonic() < deadline:
            time.sleep(0.02)
        accepted = time.monotonic()  # the last of them was accepted by now
        assert proxy.site.open_connections >= 3000
        fresh = requests.Session()  # a new connection, accepted alongside the flood
        answers = [_query(fresh, proxy, token) for _ in range(5)]
        assert [code for code, _ in answers] == [200] * 5
        assert sorted(took for _, took in answers)[2] < 0.5, answers
        open_socks = list(socks)
        while open_socks and time.monotonic() < accepted + timeout + 5:
            time.sleep(0.2)
            open_socks = [s for s in open_socks if not _closed(s)]
        closed_after = time.monotonic() - accepted
        assert not open_socks, f"{len(open_socks)} still open {closed_after:.1f}s after the flood"
        assert closed_after <= timeout + 2.5, closed_after
        assert proxy.site.open_connections <= 2  # the two sessions' keep-alive connections
    assert _query(session, proxy, token)[0] == 200


def test_connection_cap_holds_and_open_connections_keep_being_served(
    proxy_factory: ProxyFactory, token_for: TokenFor
) -> None:
    """With PROXY_MAX_CONNECTIONS=200, 600 more connections never raise the open count past 200,
    while an already open keep-alive connection is still served."""
    proxy = proxy_factory(PROXY_HEADER_TIMEOUT="3s", PROXY_MAX_CONNECTIONS="200")
    token = token_for("alice")
    session = requests.Session()
    assert _query(session, proxy, token)[0] == 200
    with _flood(proxy.port, 600):
        peak = 0
        for _ in range(20):
            peak = max(peak, proxy.site.open_connections)
            time.sleep(0.05)
        assert peak == 200
        code, took = _query(session, proxy, token)
        assert code == 200 and took < 1.0
        for _ in range(40):
            peak = max(peak, proxy.site.open_connections)
            time.sleep(0.05)
        assert peak <= 200
