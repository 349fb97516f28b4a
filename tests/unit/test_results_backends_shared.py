"""The shared results-cache backends against real memcached and Redis servers on loopback."""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomcache
import pytest
from redis.asyncio import Redis

from proxy import metrics
from proxy.config import Settings
from proxy.results.backends import build_backend
from proxy.results.sealed import SharedBackend, seal, stored_key
from proxy_demo.certs import Pki
from tests.support.cacheservers import REDIS_PASSWORD, REDIS_USER, CacheServer, cache_settings

HMAC_KEY = "an-hmac-key-for-tests-0123456789abcdef"
FULL_KEY = b"v1\x00hub-a\x00https://thanos/api/metrics/v1/default\x00GET\x00/api/v1/query_range\x00q=up"
ANSWER = b'{"status":"success","data":{"resultType":"matrix","result":[]}}' * 50


def settings(**flags: Any) -> Settings:
    """Settings with the required options, the test HMAC key and `flags`."""
    return cache_settings({"PROXY_CACHE_HMAC_KEY": HMAC_KEY}, **flags)


def errors(backend: str, kind: str) -> float:
    """The results-cache error count of `backend` and `kind`."""
    value = metrics.REGISTRY.get_sample_value(
        "prom_keycloak_proxy_results_cache_errors_total", {"backend": backend, "kind": kind}
    )
    return value or 0.0


@pytest.fixture
async def opened() -> AsyncIterator[Callable[[Settings], SharedBackend]]:
    """Build backends from settings; each is closed after the test."""
    built: list[SharedBackend] = []

    def make(s: Settings) -> SharedBackend:
        backend = build_backend(s)
        assert isinstance(backend, SharedBackend)
        built.append(backend)
        return backend

    yield make
    for backend in built:
        await backend.close()


def memcached_settings(server: CacheServer, **flags: Any) -> Settings:
    """Settings for `server` as the memcached backend."""
    return settings(**{"cache": "memcached", "cache_address": server.address, **flags})


def redis_settings(server: CacheServer, **flags: Any) -> Settings:
    """Settings for `server`'s plain port as the Redis backend, with the test ACL user."""
    given = {"cache_address": server.address, "cache_username": REDIS_USER, "cache_password": REDIS_PASSWORD}
    return settings(cache="redis", **(given | flags))


def tls_flags(pki: Pki, *, client: bool = True) -> dict[str, Any]:
    """TLS options trusting the test CA, with the client certificate unless `client` is False."""
    flags: dict[str, Any] = {"cache_tls": True, "cache_ca_cert": str(pki.ca_cert)}
    if client:
        flags |= {"cache_tls_cert": str(pki.client_cert), "cache_tls_key": str(pki.client_key)}
    return flags


async def round_trip(backend: SharedBackend) -> None:
    """Set then get returns the value; an unknown key is a plain miss."""
    key = FULL_KEY + os.urandom(8).hex().encode()
    assert await backend.get(key) is None
    await backend.set(key, ANSWER)
    assert await backend.get(key) == ANSWER
    assert await backend.get(key + b"-other") is None


async def test_memcached_round_trip(memcached_server: CacheServer, opened: Any) -> None:
    """memcached stores and returns an answer; errors stay at zero."""
    before = errors("memcached", "error") + errors("memcached", "timeout")
    await round_trip(opened(memcached_settings(memcached_server)))
    assert errors("memcached", "error") + errors("memcached", "timeout") == before


async def test_memcached_round_trip_over_tls_with_client_cert(
    memcached_tls_server: CacheServer, pki: Pki, opened: Any
) -> None:
    """memcached over TLS, authenticated by the client certificate, stores and returns an answer."""
    await round_trip(opened(memcached_settings(memcached_tls_server, **tls_flags(pki))))


async def test_memcached_refuses_tls_without_client_cert_and_the_proxy_misses(
    memcached_tls_server: CacheServer, pki: Pki, opened: Any
) -> None:
    """Without a client certificate memcached refuses the connection: a counted miss, no raise."""
    before = errors("memcached", "error") + errors("memcached", "timeout")
    backend = opened(memcached_settings(memcached_tls_server, **tls_flags(pki, client=False)))
    await backend.set(FULL_KEY, ANSWER)
    assert await backend.get(FULL_KEY) is None
    assert errors("memcached", "error") + errors("memcached", "timeout") >= before + 2


async def test_memcached_client_cert_from_another_ca_is_refused(
    memcached_tls_server: CacheServer, pki: Pki, opened: Any
) -> None:
    """A client certificate memcached's CA did not sign does not get in either."""
    flags = tls_flags(pki) | {
        "cache_tls_cert": str(pki.other_client_cert),
        "cache_tls_key": str(pki.other_client_key),
    }
    before = errors("memcached", "error") + errors("memcached", "timeout")
    backend = opened(memcached_settings(memcached_tls_server, **flags))
    assert await backend.get(FULL_KEY) is None
    assert errors("memcached", "error") + errors("memcached", "timeout") == before + 1


async def test_redis_round_trip_with_password(redis_server: CacheServer, opened: Any) -> None:
    """Redis with the ACL user and password stores and returns an answer."""
    await round_trip(opened(redis_settings(redis_server)))


async def test_redis_round_trip_over_tls(redis_server: CacheServer, pki: Pki, opened: Any) -> None:
    """Redis over TLS (server verified against the CA, client certificate sent) round-trips."""
    s = redis_settings(redis_server, cache_address=redis_server.tls_address, **tls_flags(pki))
    await round_trip(opened(s))


async def test_redis_wrong_password_is_a_counted_miss(redis_server: CacheServer, opened: Any) -> None:
    """A wrong password: Redis refuses, the backend answers a miss and counts an error."""
    before = errors("redis", "error")
    backend = opened(redis_settings(redis_server, cache_password="not-the-password-at-all"))
    await backend.set(FULL_KEY, ANSWER)
    assert await backend.get(FULL_KEY) is None
    assert errors("redis", "error") == before + 2


async def test_redis_tls_with_an_untrusted_server_cert_is_a_miss(
    redis_server: CacheServer, pki: Pki, opened: Any, tmp_path: Path
) -> None:
    """The server's certificate must chain to `cache_ca_cert`: another CA → no connection, a miss."""
    s = redis_settings(redis_server, cache_address=redis_server.tls_address, **tls_flags(pki)).model_copy(
        update={"cache_ca_cert": pki.other_ca_cert}
    )
    before = errors("redis", "error")
    assert await opened(s).get(FULL_KEY) is None
    assert errors("redis", "error") == before + 1


async def memcached_raw(server: CacheServer, key: bytes, value: bytes) -> None:
    """Write `value` under the stored `key` straight into memcached (as an attacker would)."""
    host, port = server.address.rsplit(":", 1)
    client = aiomcache.Client(host, int(port))
    try:
        await client.set(key, value)
    finally:
        await client.close()


async def redis_raw(server: CacheServer, key: bytes, value: bytes) -> None:
    """Write `value` under the stored `key` straight into Redis (as an attacker would)."""
    host, port = server.address.rsplit(":", 1)
    client = Redis(host=host, port=int(port), username=REDIS_USER, password=REDIS_PASSWORD)
    try:
        await client.set(key, value)
    finally:
        await client.aclose()


FORGERIES: dict[str, Callable[[bytes, bytes], bytes]] = {
    # Another HMAC key: the attacker does not know ours.
    "wrong-hmac": lambda full, payload: seal(b"x" * 32, full, payload),
    # Authentic, but written for another full key that shares the stored key (collision/truncation).
    "other-full-key": lambda full, payload: seal(HMAC_KEY.encode(), full + b"&other", payload),
    "garbage": lambda full, payload: b"not a sealed value",
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
@pytest.mark.parametrize("kind", ["memcached", "redis"])
async def test_forged_entries_in_the_store_are_ignored_and_counted(
    kind: str, forgery: str, memcached_server: CacheServer, redis_server: CacheServer, opened: Any
) -> None:
    """An entry written directly into the store that is not sealed for this full key is a miss, counted."""
    server = memcached_server if kind == "memcached" else redis_server
    backend = opened(memcached_settings(server) if kind == "memcached" else redis_settings(server))
    full = FULL_KEY + forgery.encode() + os.urandom(4).hex().encode()
    forged = FORGERIES[forgery](full, zlib.compress(b'{"status":"success","data":"forged"}', 1))
    write = memcached_raw if kind == "memcached" else redis_raw
    await write(server, stored_key(full), forged)
    before = errors(kind, "forged")
    assert await backend.get(full) is None
    assert errors(kind, "forged") == before + 1
    await backend.set(full, ANSWER)  # the proxy's own entry replaces it and reads back
    assert await backend.get(full) == ANSWER


@pytest.mark.parametrize("kind", ["memcached", "redis"])
async def test_backend_down_is_a_quick_counted_miss(
    kind: str, cache_server_factory: Callable[[str], CacheServer], opened: Any
) -> None:
    """With the server stopped, get and set return within `cache_timeout`, counted, never raising."""
    server = cache_server_factory(kind)
    make = memcached_settings if kind == "memcached" else redis_settings
    backend = opened(make(server, cache_timeout=0.3))
    await round_trip(backend)
    server.stop()
    before = errors(kind, "error") + errors(kind, "timeout")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await backend.get(FULL_KEY) is None
    await backend.set(FULL_KEY, ANSWER)
    assert loop.time() - started < 2 * 0.3 + 0.2
    assert errors(kind, "error") + errors(kind, "timeout") == before + 2


@pytest.mark.parametrize("kind", ["memcached", "redis"])
async def test_a_timed_out_call_leaves_no_stale_reply_for_the_next(
    kind: str, memcached_server: CacheServer, redis_server: CacheServer, opened: Any
) -> None:
    """Calls cut by the timeout mid-reply never let a later call read another key's answer."""
    server = memcached_server if kind == "memcached" else redis_server
    make = memcached_settings if kind == "memcached" else redis_settings
    writer = opened(make(server))
    keys = [FULL_KEY + b"%d" % i + os.urandom(4).hex().encode() for i in range(8)]
    big = os.urandom(600_000)  # incompressible: replies large enough to be cut mid-way
    for i, key in enumerate(keys):
        await writer.set(key, big + bytes([i]))
    reader = opened(make(server, cache_timeout=5))
    reader._timeout = 0.001  # the calls' bound only (the clients' own socket timeouts stay at 5 s)
    for key in keys:
        await reader.get(key)  # most time out mid-reply
    reader._timeout = 5.0
    for i, key in enumerate(keys):
        assert await reader.get(key) == big + bytes([i])


async def test_memcached_refusing_a_large_value_is_counted_too_large(
    memcached_server: CacheServer, opened: Any
) -> None:
    """A value over memcached's item size (`-I`, 1 MiB here): not stored, counted, next call works."""
    backend = opened(memcached_settings(memcached_server))
    before = (errors("memcached", "too_large"), errors("memcached", "error"))
    key = FULL_KEY + os.urandom(8).hex().encode()
    await backend.set(key, os.urandom(2 << 20))  # incompressible: > 1 MiB stored
    assert await backend.get(key) is None
    assert (errors("memcached", "too_large"), errors("memcached", "error")) == (before[0] + 1, before[1])
    await round_trip(backend)


async def test_rotated_client_certificate_is_used_without_a_restart(
    memcached_tls_server: CacheServer, pki: Pki, opened: Any, tmp_path: Path
) -> None:
    """A client certificate swapped on disk (a Secret update) is used by the next connections."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki.other_client_cert.read_bytes())  # from a CA memcached does not trust
    key.write_bytes(pki.other_client_key.read_bytes())
    flags = tls_flags(pki) | {"cache_tls_cert": str(cert), "cache_tls_key": str(key)}
    backend = opened(memcached_settings(memcached_tls_server, cert_reload_interval="10ms", **flags))
    assert await backend.get(FULL_KEY) is None  # refused: no connection
    fresh_key, fresh_cert = tmp_path / "new.key", tmp_path / "new.crt"
    fresh_key.write_bytes(pki.client_key.read_bytes())
    fresh_cert.write_bytes(pki.client_cert.read_bytes())
    fresh_key.replace(key)  # new inodes, as Kubernetes' symlink swap gives
    fresh_cert.replace(cert)
    await asyncio.sleep(0.05)
    await round_trip(backend)
