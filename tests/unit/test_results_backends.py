"""`proxy.results.backends` and `proxy.results.sealed`: the in-process store and entry sealing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import zlib
from pathlib import Path

import pytest

from proxy import metrics
from proxy.config import ConfigError, load_settings
from proxy.results import backends, sealed
from proxy.results.backends import ENTRY_OVERHEAD, MemoryBackend, build_backend
from proxy.results.sealed import SharedBackend, seal, stored_key, unseal
from tests.support.cacheservers import REQUIRED_ENV, cache_settings

SECRET = b"k" * 32
MIB = 1 << 20


def sample(name: str, **labels: str) -> float:
    """A metric sample's value now (0 when absent)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def errors(backend: str, kind: str) -> float:
    """The results-cache error count of `backend` and `kind`."""
    return sample("prom_keycloak_proxy_results_cache_errors_total", backend=backend, kind=kind)


def answer(n: int = 200) -> bytes:
    """A query_range-like answer of `n` points (repetitive JSON, as answers are)."""
    points = ",".join(f'[{1700000000 + 30 * i},"{i % 7}.5"]' for i in range(n))
    return b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[%s]}]}}' % (
        points.encode()
    )


async def test_memory_round_trip_and_compression() -> None:
    """What is set is got back byte for byte, stored compressed (stored bytes < the answer)."""
    backend = MemoryBackend(MIB, 60)
    value = answer()
    assert await backend.get(b"k1") is None
    await backend.set(b"k1", value)
    assert await backend.get(b"k1") == value
    assert await backend.get(b"k2") is None
    assert backend.stored_bytes < len(value) // 3
    assert sample("prom_keycloak_proxy_results_cache_bytes", backend="memory") == backend.stored_bytes


async def test_memory_is_bounded_by_stored_bytes_and_counts_evictions() -> None:
    """Past `cache_max_bytes` the least recently used entries go, each counted as an eviction."""
    backend = MemoryBackend(MIB, 60)
    value = os.urandom(100_000)  # incompressible: ≈ 100 kB stored each
    before = sample("prom_keycloak_proxy_results_cache_evictions_total", backend="memory")
    for i in range(30):
        await backend.set(b"key%d" % i, value)
        await backend.get(b"key0")  # kept recently used: never the one evicted
        assert backend.stored_bytes <= MIB
    evicted = sample("prom_keycloak_proxy_results_cache_evictions_total", backend="memory") - before
    assert len(backend) == 30 - evicted and 19 <= evicted <= 21
    assert await backend.get(b"key0") == value
    assert await backend.get(b"key1") is None


async def test_memory_refuses_an_entry_larger_than_the_bound() -> None:
    """An entry larger than the whole bound is not stored and is counted `too_large`."""
    backend = MemoryBackend(MIB, 60)
    before = errors("memory", "too_large")
    await backend.set(b"big", os.urandom(MIB))
    assert len(backend) == 0 and errors("memory", "too_large") == before + 1
    await backend.set(b"small", b"x")
    assert backend.stored_bytes == len(b"small") + len(zlib.compress(b"x", 1)) + ENTRY_OVERHEAD


async def test_memory_entries_expire_after_the_ttl() -> None:
    """An entry is a miss once `cache_ttl` has passed (expiry, not an eviction)."""
    backend = MemoryBackend(MIB, 0.05)
    await backend.set(b"k", b"v")
    assert await backend.get(b"k") == b"v"
    await asyncio.sleep(0.1)
    assert await backend.get(b"k") is None


def test_build_backend_follows_the_cache_option() -> None:
    """`PROXY_CACHE=off` builds no backend; the default is the in-process one with its bounds."""
    assert build_backend(cache_settings(cache="off")) is None
    backend = build_backend(cache_settings(cache_max_bytes=2 * MIB))
    assert isinstance(backend, MemoryBackend) and backend.name == "memory"
    assert backend._entries.maxsize == 2 * MIB


def test_seal_round_trip_and_layout() -> None:
    """A sealed value opens only for its own full key, and shows neither the key nor the payload."""
    full = b"v1\x00hub-a\x00https://prom/\x00GET /api/v1/query_range\x00query=up"
    stored = seal(SECRET, full, b"payload of team-a")
    assert full not in stored and b"team-a" not in stored and b"query=up" not in stored
    assert unseal(SECRET, full, stored) == b"payload of team-a"
    assert seal(SECRET, full, b"payload of team-a") != stored  # a fresh nonce every time
    assert stored_key(full) == b"pkp1:" + hashlib.sha256(full).hexdigest().encode()
    assert len(stored_key(full)) < 250  # memcached's key limit


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda s: seal(b"x" * 32, b"full", b"payload"), id="other-hmac-key"),
        pytest.param(lambda s: s[:-1] + bytes([s[-1] ^ 1]), id="payload-bit-flipped"),
        pytest.param(lambda s: seal(SECRET, b"other full key", b"payload"), id="authentic-other-full-key"),
        pytest.param(lambda s: s[:20], id="truncated"),
        pytest.param(lambda s: b"", id="empty"),
    ],
)
def test_unseal_refuses_anything_not_sealed_for_this_key(tamper: object) -> None:
    """Wrong HMAC key, a changed byte, another full key, a truncated value: all refused."""
    stored = seal(SECRET, b"full", b"payload")
    assert unseal(SECRET, b"full", tamper(stored)) is None  # type: ignore[operator]


class _DictStore:
    """A store in a dict, slowed or failing on demand (the real servers: test_results_backends_shared)."""

    def __init__(self) -> None:
        """Empty, fast and working."""
        self.data: dict[bytes, bytes] = {}
        self.delay = 0.0
        self.fail = False

    async def get(self, key: bytes) -> bytes | None:
        """The stored value after `delay`, or raise when failing."""
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionRefusedError
        return self.data.get(key)

    async def set(self, key: bytes, value: bytes, ttl: int) -> None:
        """Store after `delay`, or raise when failing."""
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionRefusedError
        self.data[key] = value

    async def close(self) -> None:
        """Nothing to close."""


async def test_shared_backend_logs_forged_entries_at_most_once_a_minute() -> None:
    """Many forged reads: every one counted, one warning logged."""
    store = _DictStore()
    backend = SharedBackend("t_forge", store, SECRET, ttl=60, timeout=1, max_value_bytes=MIB)
    events: list[str] = []
    original = sealed.log.warning
    sealed.log.warning = lambda event, **_: events.append(event)
    try:
        for i in range(5):
            store.data[stored_key(b"k%d" % i)] = b"\x00" * 64
            assert await backend.get(b"k%d" % i) is None
    finally:
        sealed.log.warning = original
    assert errors("t_forge", "forged") == 5
    assert events == ["results_cache_forged_entry"]


async def test_shared_backend_bounds_every_call_by_the_timeout() -> None:
    """A store slower than `cache_timeout`: get is a miss and set a no-op, both counted, no raise."""
    store = _DictStore()
    backend = SharedBackend("t_slow", store, SECRET, ttl=60, timeout=0.05, max_value_bytes=MIB)
    store.delay = 5.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await backend.get(b"k") is None
    await backend.set(b"k", b"v")
    assert loop.time() - started < 1.0
    assert errors("t_slow", "timeout") == 2
    store.delay, store.fail = 0.0, True
    assert await backend.get(b"k") is None
    assert errors("t_slow", "error") == 1


def config_problems(environ: dict[str, str]) -> str:
    """The configuration problems `environ` (on top of the required options) gives, as one text."""
    with pytest.raises(ConfigError) as info:
        cache_settings(environ)
    return "\n".join(info.value.problems)


@pytest.mark.parametrize("kind", ["memcached", "redis"])
def test_shared_backend_needs_address_and_hmac_key(kind: str) -> None:
    """memcached/redis without `cache_address` and `cache_hmac_key`: exit-2 problems naming both."""
    text = config_problems({"PROXY_CACHE": kind})
    assert f"PROXY_CACHE_ADDRESS: required with PROXY_CACHE={kind}" in text
    assert f"PROXY_CACHE_HMAC_KEY: required with PROXY_CACHE={kind}" in text


def test_short_hmac_key_and_bad_address_are_refused() -> None:
    """An HMAC key under 32 bytes and an address that is not host:port are problems."""
    text = config_problems(
        {"PROXY_CACHE": "redis", "PROXY_CACHE_ADDRESS": "redis", "PROXY_CACHE_HMAC_KEY": "k" * 31}
    )
    assert "PROXY_CACHE_HMAC_KEY: at least 32 bytes, got 31" in text
    assert "PROXY_CACHE_ADDRESS: expected host:port" in text


def test_options_that_would_be_ignored_are_refused(tmp_path: Path) -> None:
    """A password for memcached, or cache TLS files without PROXY_CACHE_TLS, would give false safety."""
    text = config_problems(
        {
            "PROXY_CACHE": "memcached",
            "PROXY_CACHE_ADDRESS": "127.0.0.1:11211",
            "PROXY_CACHE_HMAC_KEY": "k" * 32,
            "PROXY_CACHE_PASSWORD": "pw",
            "PROXY_CACHE_TLS_SERVER_NAME": "cache.example",
        }
    )
    assert "memcached authenticates clients by TLS client certificate" in text
    assert "PROXY_CACHE_TLS_SERVER_NAME: only used with PROXY_CACHE_TLS=true" in text


def test_cache_tls_files_are_loaded_at_start(tmp_path: Path) -> None:
    """A cache CA bundle that holds no certificate is a start-up problem, like the upstream's."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    text = config_problems(
        {
            "PROXY_CACHE": "redis",
            "PROXY_CACHE_ADDRESS": "127.0.0.1:6379",
            "PROXY_CACHE_HMAC_KEY": "k" * 32,
            "PROXY_CACHE_TLS": "true",
            "PROXY_CACHE_CA_CERT": str(bogus),
        }
    )
    assert f"PROXY_CACHE_CA_CERT: {bogus} holds no usable CA certificate" in text


@pytest.mark.parametrize(
    ("environ", "warned"),
    [
        ({"PROXY_CACHE": "memcached"}, "without a client certificate"),
        ({"PROXY_CACHE": "redis"}, "without a password or client certificate"),
        ({"PROXY_CACHE": "redis", "PROXY_CACHE_PASSWORD": "pw"}, None),
    ],
)
def test_unauthenticated_shared_cache_is_warned_about(environ: dict[str, str], warned: str | None) -> None:
    """A shared cache anyone can reach is allowed (entries stay sealed) but warned about at start."""
    heard: list[str] = []
    given = {"PROXY_CACHE_ADDRESS": "127.0.0.1:6379", "PROXY_CACHE_HMAC_KEY": "k" * 32} | environ
    load_settings({}, REQUIRED_ENV | given, warn=heard.append)
    assert [w for w in heard if "fill or empty the cache" in w] == ([] if warned is None else heard[-1:])
    assert warned is None or warned in heard[-1]


async def test_large_payloads_are_compressed_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A payload over 256 KiB is (de)compressed on a worker thread, a small one inline; both round-trip."""
    threads: list[int] = []
    real_compress, real_decompress = backends.compress, backends.decompress

    def compress(payload: bytes) -> bytes:
        threads.append(threading.get_ident())
        return real_compress(payload)

    def decompress(stored: bytes) -> bytes | None:
        threads.append(threading.get_ident())
        return real_decompress(stored)

    monkeypatch.setattr(backends, "compress", compress)
    monkeypatch.setattr(backends, "decompress", decompress)
    backend = MemoryBackend(8 * MIB, 60)
    small, large = answer(100), os.urandom(300_000) + answer(20_000)
    await backend.set(b"small", small)
    assert await backend.get(b"small") == small
    assert threads == [threading.get_ident()] * 2
    threads.clear()
    await backend.set(b"large", large)
    assert await backend.get(b"large") == large
    assert len(threads) == 2 and threading.get_ident() not in threads
