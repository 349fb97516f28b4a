"""HTTP edge cases against the running proxy, mostly over raw sockets.

Path normalisation, request smuggling shapes (Content-Length/Transfer-Encoding), size limits,
encoded bodies, non-UTF-8 bytes, slow clients, HTTP/1.0, pipelining, method override and
`Expect: 100-continue`. The proxy builds every upstream path from its route table, so the
property checked for paths is: a mangled path is refused (400/404/405), or — if it is served —
its answer is enforced like the canonical one.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
import zlib
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.support.oracle import Grant, leaked_series
from tests.support.proxy_server import ProxyServer
from tests.support.stack import ProxyFactory, TokenFor

pytestmark = [pytest.mark.prometheus]

ALICE = Grant.of_projects("nerc-ocp-prod", "team-a")
Q = quote("DCGM_FI_DEV_GPU_UTIL", safe="")
STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes (or `timeout` of silence)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks: list[bytes] = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def responses(raw: bytes) -> list[tuple[int, bytes, bytes]]:
    """(status, head, body) of every response in a raw byte stream, framing respected."""
    out: list[tuple[int, bytes, bytes]] = []
    while raw:
        m = STATUS.match(raw)
        if m is None:
            break
        head, _, rest = raw.partition(b"\r\n\r\n")
        lower = head.lower()
        status = int(m.group(1))
        if status == 100:
            out.append((status, head, b""))
            raw = rest
            continue
        length = re.search(rb"\r\ncontent-length: *(\d+)", lower)
        if b"transfer-encoding: chunked" in lower:
            body = bytearray()
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    rest = rest.partition(b"\r\n")[2]
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            out.append((status, head, bytes(body)))
            raw = rest
        elif length is not None:
            n = int(length.group(1))
            out.append((status, head, rest[:n]))
            raw = rest[n:]
        else:
            out.append((status, head, rest))
            break
    return out


def statuses(raw: bytes) -> list[int]:
    """Status codes of every final response in a raw byte stream."""
    return [status for status, _, _ in responses(raw) if status != 100]


def body_of(raw: bytes) -> bytes:
    """The body of the first final response (de-chunked when needed)."""
    return next(body for status, _, body in responses(raw) if status != 100)


@pytest.fixture(scope="module")
def bearer(token_for: TokenFor) -> str:
    """Alice's Authorization header value."""
    return f"Bearer {token_for('alice')}"


def req(method: str, target: str, bearer: str | None, *, extra: str = "", body: bytes = b"",
        version: str = "HTTP/1.1") -> bytes:
    """A raw request with `Connection: close`."""
    auth = f"Authorization: {bearer}\r\n" if bearer else ""
    length = f"Content-Length: {len(body)}\r\n" if body and "Content-Length" not in extra \
        and "Transfer-Encoding" not in extra else ""
    return (f"{method} {target} {version}\r\nHost: 127.0.0.1\r\n{auth}{length}{extra}"
            "Connection: close\r\n\r\n").encode("latin-1") + body


# ------------------------------------------------------------------ path normalisation

MANGLED_PATHS = [
    "//api/v1/query", "/api//v1/query", "/api/v1//query", "/./api/v1/query", "/api/./v1/query",
    "/api/v1/./query", "/api/v1/x/../query", "/api/v1/query/..%2Fquery", "/api%2Fv1%2Fquery",
    "/api/v1%2Fquery", "/api/v1/%71uery", "/api/v1/%2e/query", "/api/v1/%2e%2e/v1/query",
    "/api/v1/query;x=1", "/api/v1/query;/..", "/api/v1/query/", "/API/V1/QUERY", "/Api/v1/query",
    "/api/v1/query%00", "/api/v1/query%20", "/api/v1/query.json", "/api/v1/query%3Fx=1",
    "/api/v1/label/..%2F..%2Fquery/values", "/api/v1/label/%2e%2e/values",
    "/api/v1/label/cluster/values/../../query", "/api/v1/label/__name__%2F..%2F/values",
    "/federate/", "/federate;", "/api/v1/series/", "/api/v1/status/config",
    "/api/v1/status/flags", "/api/v1/targets", "/api/v1/admin/tsdb/delete_series",
    "/api/v1/admin/tsdb/snapshot", "/-/reload", "/-/quit", "/api/v2/status", "/graph",
    "/api/v1/write", "/api/v1/read", "/api/v1/status/tsdb", "/api/v1/query_exemplars/",
    "http://127.0.0.1/api/v1/status/config", "*",
]


@pytest.mark.parametrize("path", MANGLED_PATHS)
def test_mangled_paths_never_reach_an_unenforced_upstream_path(
    proxy_server: ProxyServer, bearer: str, path: str
) -> None:
    """A mangled path is refused, or served exactly like a route (enforced, nothing leaked)."""
    for method in ("GET", "POST"):
        target = f"{path}?query={Q}" if "?" not in path and path != "*" else path
        raw = exchange(proxy_server.port, req(method, target, bearer))
        codes = statuses(raw)
        assert codes, raw[:200]
        assert codes[0] in (200, 400, 404, 405), (method, path, raw[:300])
        if codes[0] == 200:
            doc = json.loads(body_of(raw))
            result = doc.get("data", {}).get("result", []) if isinstance(doc, dict) else []
            assert not leaked_series([r["metric"] for r in result], ALICE), (path, result[:3])


def test_admin_and_write_paths_are_404_even_for_hub_wide_callers(
    proxy_server: ProxyServer, token_for: TokenFor
) -> None:
    """Prometheus' admin, config, write and UI paths are not in the route table: 404 for dave."""
    dave = f"Bearer {token_for('dave')}"
    for path in ("/api/v1/admin/tsdb/delete_series?match[]=up", "/api/v1/status/config",
                 "/-/reload", "/api/v1/write", "/api/v1/targets", "/graph"):
        for method in ("GET", "POST", "PUT", "DELETE"):
            assert statuses(exchange(proxy_server.port, req(method, path, dave)))[0] in (404, 405)


# ------------------------------------------------------------------ framing and smuggling


def test_content_length_and_transfer_encoding_together_are_refused(
    proxy_server: ProxyServer, bearer: str
) -> None:
    """CL + TE (a smuggling shape) is a 400 and the hidden second request is never answered."""
    smuggled = b"0\r\n\r\nGET /api/v1/status/buildinfo HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = exchange(proxy_server.port, req(
        "POST", "/api/v1/query", bearer, body=smuggled,
        extra=f"Content-Length: {len(smuggled)}\r\nTransfer-Encoding: chunked\r\n"
              "Content-Type: application/x-www-form-urlencoded\r\n"))
    assert statuses(raw) == [400], raw[:300]


@pytest.mark.parametrize("lengths", [("5", "6"), ("5", "5, 6"), ("5,6",), ("-1",), ("+5",),
                                     ("0x5",), ("5 5",)])
def test_conflicting_or_malformed_content_length_is_400(
    proxy_server: ProxyServer, bearer: str, lengths: tuple[str, ...]
) -> None:
    """Duplicate, conflicting or malformed Content-Length values: 400, one response only."""
    extra = "".join(f"Content-Length: {n}\r\n" for n in lengths)
    raw = exchange(proxy_server.port, req("POST", "/api/v1/query", bearer, body=b"query=up&x=",
                                          extra=extra + "Content-Type: application/"
                                          "x-www-form-urlencoded\r\n"))
    assert statuses(raw) == [400], raw[:300]


@pytest.mark.parametrize("te", ["chunked, identity", "xchunked", "chunked\r\nTransfer-Encoding: "
                                "chunked", "identity", "gzip, chunked", "deflate, chunked"])
def test_transfer_coding_other_than_chunked_is_refused(
    proxy_server: ProxyServer, bearer: str, te: str
) -> None:
    """Transfer-Encoding other than one `chunked` never gets a 200.

    Regression: aiohttp read `gzip, chunked` as plain chunked and the proxy served the query.
    """
    body = b"b\r\nquery=1%2B1\r\n0\r\n\r\n"
    raw = exchange(proxy_server.port, req(
        "POST", "/api/v1/query", bearer, body=body,
        extra=f"Transfer-Encoding: {te}\r\nContent-Type: application/x-www-form-urlencoded\r\n"))
    codes = statuses(raw)
    assert codes and codes[0] in (400, 415, 501), raw[:300]
    assert len(codes) == 1


def test_chunked_form_body_is_accepted(proxy_server: ProxyServer, bearer: str) -> None:
    """A well-formed chunked form body is read and enforced like any other body."""
    form = f"query={Q}".encode()
    body = f"{len(form):x}\r\n".encode() + form + b"\r\n0\r\n\r\n"
    raw = exchange(proxy_server.port, req(
        "POST", "/api/v1/query", bearer, body=body,
        extra="Transfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n"))
    assert statuses(raw) == [200], raw[:300]
    result = json.loads(body_of(raw))["data"]["result"]
    assert result and not leaked_series([r["metric"] for r in result], ALICE)


@pytest.fixture(scope="module")
def small_proxy(
    prometheus: object, emulator_server: object
) -> Iterator[ProxyServer]:
    """A proxy with small body/URL limits (1 KiB / 2 KiB)."""
    from tests.support.proxy_server import make_settings
    from tests.support.stack import proxy_environ

    env = proxy_environ(prometheus, emulator_server.base_url,  # type: ignore[arg-type,attr-defined]
                        PROXY_MAX_BODY_BYTES="1024", PROXY_MAX_URL_BYTES="2048")
    server = ProxyServer(make_settings(env)).start()
    yield server
    server.stop()


def test_oversized_content_length_is_413_before_the_body_is_sent(
    small_proxy: ProxyServer, bearer: str
) -> None:
    """A declared 100 MB body gets 413 while the client has sent only headers (no buffering)."""
    with socket.create_connection(("127.0.0.1", small_proxy.port), timeout=10) as sock:
        sock.sendall(req("POST", "/api/v1/query", bearer, extra=(
            "Content-Length: 100000000\r\nContent-Type: application/x-www-form-urlencoded\r\n")))
        started = time.monotonic()
        raw = sock.recv(65536)
        assert time.monotonic() - started < 5
    assert statuses(raw) == [413], raw[:300]


def test_oversized_chunked_body_is_413(small_proxy: ProxyServer, bearer: str) -> None:
    """A chunked body without Content-Length is cut off at the limit with 413."""
    chunk = b"query=" + b"a" * 600
    body = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 4 + b"0\r\n\r\n"
    raw = exchange(small_proxy.port, req(
        "POST", "/api/v1/query", bearer, body=body,
        extra="Transfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n"))
    assert statuses(raw)[:1] == [413], raw[:300]


def test_oversized_url_is_413(small_proxy: ProxyServer, bearer: str) -> None:
    """A URL over PROXY_MAX_URL_BYTES: 413 (not a PromQL 400)."""
    raw = exchange(small_proxy.port, req("GET", "/api/v1/query?query=up&pad=" + "a" * 3000, bearer))
    assert statuses(raw) == [413], raw[:300]


@pytest.mark.parametrize("size", [70000, 1000000])
def test_oversized_header_is_refused(proxy_server: ProxyServer, bearer: str, size: int) -> None:
    """A single huge header is refused by the HTTP parser (400/431), never processed."""
    raw = exchange(proxy_server.port, req("GET", f"/api/v1/query?query={Q}", bearer,
                                          extra=f"X-Pad: {'a' * size}\r\n"))
    codes = statuses(raw)
    assert not codes or codes[0] in (400, 413, 431), raw[:300]


@pytest.mark.parametrize(("encoding", "pack"), [("gzip", gzip.compress), ("deflate", zlib.compress),
                                                ("br", lambda b: b), ("identity", lambda b: b)])
def test_encoded_request_bodies_are_415(
    proxy_server: ProxyServer, bearer: str, encoding: str, pack: object
) -> None:
    """Any Content-Encoding on a request body: 415, never decompressed."""
    body = pack(f"query={Q}".encode())  # type: ignore[operator]
    raw = exchange(proxy_server.port, req(
        "POST", "/api/v1/query", bearer, body=body,
        extra=f"Content-Encoding: {encoding}\r\nContent-Type: application/x-www-form-urlencoded\r\n"))
    # aiohttp's own parser refuses `br` (no Brotli module) with a plain-text 400 before the app
    assert statuses(raw) == ([400] if encoding == "br" else [415]), raw[:300]


def test_gzip_bomb_is_refused_without_decompression(small_proxy: ProxyServer, bearer: str) -> None:
    """A small gzip body inflating far past the limit: 415 (checked before reading), not 413."""
    bomb = gzip.compress(b"query=" + b"0" * 800_000)
    assert len(bomb) < 1024
    raw = exchange(small_proxy.port, req(
        "POST", "/api/v1/query", bearer, body=bomb,
        extra="Content-Encoding: gzip\r\nContent-Type: application/x-www-form-urlencoded\r\n"))
    assert statuses(raw) == [415], raw[:300]


# ------------------------------------------------------------------ bytes that are not UTF-8


@pytest.mark.parametrize("target", [
    "/api/v1/query?query=up%ff", "/api/v1/query?query=up{cluster=%22%c3%28%22}",
    "/api/v1/series?match[]=up{namespace=%22%ed%a0%80%22}", "/api/v1/labels?match[]=%fe",
    "/api/v1/query?%ff=1&query=up",
])
def test_non_utf8_query_strings_are_400(proxy_server: ProxyServer, bearer: str, target: str) -> None:
    """Percent-encoded bytes that are not UTF-8 in the query string: 400."""
    assert statuses(exchange(proxy_server.port, req("GET", target, bearer))) == [400]


def test_non_utf8_body_is_400(proxy_server: ProxyServer, bearer: str) -> None:
    """Non-UTF-8 bytes in a form body (raw or percent-encoded): 400."""
    for body in (b"query=up{cluster=\"\xff\"}", b"query=up%ff"):
        raw = exchange(proxy_server.port, req(
            "POST", "/api/v1/query", bearer, body=body,
            extra="Content-Type: application/x-www-form-urlencoded\r\n"))
        assert statuses(raw) == [400], raw[:300]


def test_non_utf8_label_name_in_path_is_refused(proxy_server: ProxyServer, bearer: str) -> None:
    """A label name with non-UTF-8 or non-label characters in the values path: 400/404."""
    for name in ("%ff", "clu%00ster", "cluster%2F..", "é"):
        codes = statuses(exchange(proxy_server.port,
                                  req("GET", f"/api/v1/label/{name}/values", bearer)))
        assert codes and codes[0] in (400, 404), name


def test_raw_non_ascii_bytes_in_request_line_are_refused(
    proxy_server: ProxyServer, bearer: str
) -> None:
    """Raw (unencoded) high bytes in the request target: refused, never a 200."""
    raw = exchange(proxy_server.port, b"GET /api/v1/query?query=up{cluster=\"\xff\xfe\"} HTTP/1.1\r\n"
                   b"Host: x\r\nAuthorization: " + bearer.encode() + b"\r\nConnection: close\r\n\r\n")
    codes = statuses(raw)
    assert not codes or codes[0] == 400, raw[:300]


# ------------------------------------------------------------------ protocol behaviour


def test_http_1_0_without_host(proxy_server: ProxyServer, bearer: str) -> None:
    """HTTP/1.0 without Host is served (enforced) and the connection is closed after it."""
    raw = exchange(proxy_server.port, f"GET /api/v1/query?query={Q} HTTP/1.0\r\n"
                   f"Authorization: {bearer}\r\n\r\n".encode())
    assert statuses(raw) == [200], raw[:300]
    assert raw.startswith(b"HTTP/1.0 200") or raw.startswith(b"HTTP/1.1 200")


def test_pipelined_requests_do_not_share_credentials(proxy_server: ProxyServer, bearer: str) -> None:
    """Two pipelined requests: alice's is served, the second (no token) gets 401, in order."""
    first = (f"GET /api/v1/query?query={Q} HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n\r\n")
    second = f"GET /api/v1/query?query={Q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = exchange(proxy_server.port, (first + second).encode())
    assert statuses(raw) == [200, 401], raw[:500]


def test_many_pipelined_requests_are_answered_in_order(
    proxy_server: ProxyServer, bearer: str
) -> None:
    """Twenty pipelined requests (allowed/forbidden alternating) get twenty answers in order."""
    ok = f"GET /api/v1/query?query={Q} HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n\r\n"
    denied = ("GET /api/v1/query?query=up{cluster=%22nerc-ocp-test%22} HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: {bearer}\r\n\r\n")
    stream = (ok + denied) * 10
    stream = stream[: -2] + "Connection: close\r\n\r\n"
    raw = exchange(proxy_server.port, stream.encode())
    assert statuses(raw) == [200, 403] * 10, statuses(raw)


@pytest.mark.parametrize("override", ["GET", "POST", "DELETE", "PUT"])
def test_method_override_headers_are_ignored(
    proxy_server: ProxyServer, bearer: str, override: str
) -> None:
    """X-HTTP-Method-Override (and friends) change nothing: a POST to a GET-only route stays 405."""
    extra = (f"X-HTTP-Method-Override: {override}\r\nX-HTTP-Method: {override}\r\n"
             f"X-Method-Override: {override}\r\n")
    assert statuses(exchange(proxy_server.port, req("POST", "/api/v1/rules", bearer,
                                                    extra=extra))) == [405]
    raw = exchange(proxy_server.port, req("GET", f"/api/v1/query?query={Q}", bearer, extra=extra))
    assert statuses(raw) == [200]


def test_expect_100_continue(proxy_server: ProxyServer, bearer: str) -> None:
    """`Expect: 100-continue`: an interim 100, then the enforced answer for the body sent."""
    form = f"query={Q}".encode()
    with socket.create_connection(("127.0.0.1", proxy_server.port), timeout=10) as sock:
        sock.sendall(req("POST", "/api/v1/query", bearer, extra=(
            f"Content-Length: {len(form)}\r\nExpect: 100-continue\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n")))
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(form)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert statuses(raw) == [200], raw[:300]


def test_unknown_expectation_is_417(proxy_server: ProxyServer, bearer: str) -> None:
    """An Expect value other than 100-continue is refused (417), not ignored."""
    raw = exchange(proxy_server.port, req("POST", "/api/v1/query", bearer, body=b"query=1",
                                          extra="Expect: something-else\r\n"))
    assert statuses(raw)[:1] in ([417], [400]), raw[:300]


# ------------------------------------------------------------------ slow clients


def _still_open_after(port: int, partial: bytes, seconds: float) -> bool:
    """Whether the server keeps a connection open that sent only `partial` for `seconds`."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(partial)
        try:
            return sock.recv(1) != b""
        except TimeoutError:
            return True
        except ConnectionResetError:
            return False


def test_slowloris_connections_do_not_block_other_clients(
    proxy_factory: ProxyFactory, bearer: str
) -> None:
    """200 connections stuck in their headers or bodies: a normal request is still served fast."""
    proxy = proxy_factory()
    stuck: list[socket.socket] = []
    try:
        for i in range(200):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            partial = (b"GET /api/v1/query HTTP/1.1\r\nHost: x\r\nX-Slow: " if i % 2 else
                       req("POST", "/api/v1/query", bearer, extra=(
                           "Content-Length: 1000\r\nContent-Type: application/"
                           "x-www-form-urlencoded\r\n")) + b"query=")
            sock.sendall(partial)
            stuck.append(sock)
        started = time.monotonic()
        raw = exchange(proxy.port, req("GET", f"/api/v1/query?query={Q}", bearer))
        assert statuses(raw) == [200]
        assert time.monotonic() - started < 5
    finally:
        for sock in stuck:
            sock.close()


def test_slow_client_headers_are_closed_at_the_header_timeout(
    proxy_factory: ProxyFactory, bearer: str
) -> None:
    """A client stuck mid-headers is disconnected once PROXY_HEADER_TIMEOUT has passed."""
    proxy = proxy_factory(PROXY_HEADER_TIMEOUT="2s")
    partial = b"GET /api/v1/query HTTP/1.1\r\nHost: x\r\nX-Slow: a"
    started = time.monotonic()
    assert not _still_open_after(proxy.port, partial, 8)
    assert 1.5 < time.monotonic() - started < 6
    raw = exchange(proxy.port, req("GET", f"/api/v1/query?query={Q}", bearer))
    assert statuses(raw) == [200]


def test_slow_client_body_gets_408(proxy_server: ProxyServer, bearer: str) -> None:
    """A client stuck mid-body is answered 408 and disconnected within 15 s (slowloris defence)."""
    partial = req("POST", "/api/v1/query", bearer, extra=(
        "Content-Length: 1000\r\nContent-Type: application/x-www-form-urlencoded\r\n")) + b"query="
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy_server.port), timeout=15) as sock:
        sock.sendall(partial)
        answer = sock.recv(65536)  # the 408 arrives; aiohttp then lingers briefly before closing
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 15


def test_pipelined_health_checks(proxy_server: ProxyServer) -> None:
    """Two pipelined unauthenticated health checks both get answered."""
    raw = exchange(proxy_server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert statuses(raw) == [200, 200], raw[:500]


def test_pipelined_after_error(proxy_server: ProxyServer) -> None:
    """A 401 followed by a pipelined health check: both answered."""
    raw = exchange(proxy_server.port, b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert statuses(raw) == [401, 200], raw[:500]
