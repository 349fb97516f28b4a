"""Every cache on the request path, in one list: what it holds, its bound, and its hit/miss counts.

Counts are plain integers bumped by the cache's owner (`stats.lookup(hit)`) or read from the
cache itself (functools' `cache_info`, the PromQL analysis cache's counters); they are exported
when `/metrics` is scraped as `prom_keycloak_proxy_cache_events_total{cache,result}` and
`prom_keycloak_proxy_cache_entries{cache}`, so a lookup costs no metric call. Caches whose outcome
tells an operator why a request was fast or slow (authentication and authorization) are also
noted on the request's log line (`cache_<name>`, `cache_hit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, TypeVar, cast

from cachetools import TLRUCache
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy import context, metrics
from proxy.promql import parse as parse_module
from proxy.promql.analyse import ANALYSIS_CACHE
from proxy.promql.enforce import ENFORCE_CACHE
from proxy.promql.selectors import trust_pattern


@dataclass(eq=False, slots=True)
class CacheStats:
    """Hit/miss counts and size of one request-path cache."""

    name: str
    bound: str
    logged: bool = False
    hits: int = 0
    misses: int = 0
    entries: int = 0
    # For caches that count themselves: () -> (hits, misses, entries), read at scrape time.
    source: Callable[[], tuple[int, int, int]] | None = None

    def lookup(self, hit: bool) -> None:
        """Count one lookup (and note it on the request's log line for logged caches)."""
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        if self.logged:
            context.note_cache(self.name, hit)

    def counts(self) -> tuple[int, int, int]:
        """(hits, misses, entries) now."""
        return self.source() if self.source is not None else (self.hits, self.misses, self.entries)


CACHES: dict[str, CacheStats] = {}
F = TypeVar("F", bound=Callable[..., Any])

K = TypeVar("K", bound=Hashable)
E = TypeVar("E", bound="Expiring")


class Expiring(Protocol):
    """An entry that knows until when it may be used (on its cache's clock)."""

    @property
    def until(self) -> float:
        """The last moment the entry may be used."""


def until_cache(maxsize: int, clock: Callable[[], float]) -> TLRUCache[K, E]:
    """A bounded cache whose entries expire at their own `until`, read on `clock`."""
    return TLRUCache(maxsize, ttu=lambda _key, entry, _now: entry.until, timer=clock)


def _declare(name: str, bound: str, *, logged: bool = False) -> CacheStats:
    stats = CACHES[name] = CacheStats(name, bound, logged)
    return stats


def _info_of(cached: Any) -> Callable[[], tuple[int, int, int]]:
    """Counts of a functools cache, read from its `cache_info()`."""

    def counts() -> tuple[int, int, int]:
        info = cached.cache_info()
        return info.hits, info.misses, info.currsize

    return counts


def memo(stats: CacheStats, maxsize: int) -> Callable[[F], F]:
    """Decorator: remember `maxsize` results of a pure function, counted under `stats`."""

    def wrap(function: F) -> F:
        cached = lru_cache(maxsize=maxsize)(function)
        stats.source = _info_of(cached)
        return cast(F, cached)

    return wrap


# Authentication: verified bearer tokens and Basic-minted tokens by token hash, never past the
# token's `exp`; introspection answers.
TOKEN = _declare("token", "10,000 tokens per verifier/minter, until the token's exp", logged=True)
BASIC = _declare("basic", "10,000 minted tokens (entries only; lookups count as token)")
INTROSPECT = _declare("introspect", "10,000 answers, at most 30 s", logged=True)
# Authorization: resource name -> id, and decisions by (token hash, names).
RESOURCE = _declare("resource", "PROXY_AUTHZ_CACHE_SIZE names", logged=True)
ALLOW = _declare("allow", "PROXY_AUTHZ_CACHE_SIZE answers, PROXY_AUTHZ_CACHE_TTL", logged=True)
DENY = _declare("deny", "PROXY_AUTHZ_CACHE_SIZE answers, PROXY_AUTHZ_DENY_CACHE_TTL", logged=True)
HOLDINGS = _declare("holdings", "in the allow/deny caches: PROXY_AUTHZ_CACHE_SIZE each", logged=True)
METRIC_NAMES = _declare(
    "metric_names", "10,000 callers' visible metric names, PROXY_AUTHZ_CACHE_TTL", logged=True
)
# PromQL (pure; counted by the caches themselves): whole analyses by query text, enforcement
# results by (analysis, holdings, mode), parse trees, compiled trust patterns.
ANALYSIS = _declare("analysis", "4,096 analyses and 4 MiB of query text")
ANALYSIS.source = lambda: (ANALYSIS_CACHE.hits, ANALYSIS_CACHE.misses, len(ANALYSIS_CACHE))
ENFORCE = _declare("enforce", "8,192 results and 8 MiB of query text")
ENFORCE.source = lambda: (ENFORCE_CACHE.hits, ENFORCE_CACHE.misses, len(ENFORCE_CACHE))
PARSE = _declare("parse", "2,048 parse trees")
PARSE.source = _info_of(parse_module._parse_checked)
TRUST_PATTERN = _declare("trust_pattern", "256 compiled PROXY_PROJECT_LABEL_METRICS patterns")
TRUST_PATTERN.source = _info_of(trust_pattern)
# Upstream URLs: dashboards resend the same long query texts on every refresh and the stdlib
# quotes in a Python loop (bench/ab.py, dash4k: 0.80 vs 1.04 CPU s per 1,000 requests without).
# Measured with bench/ab.py and dropped for no gain: decoded request fields, log strings known
# to be clean, the log redactor's per-field-name kinds, memoised metric label children.
QUOTED = _declare("quoted", "1,024 percent-encoded upstream parameter values")
# Upstream answers (docs/caching.md): the results cache's lookups, on its configured backend.
RESULTS = _declare(
    "results", "PROXY_CACHE_MAX_BYTES stored bytes in memory (or the shared backend), PROXY_CACHE_TTL"
)
# The same entries decoded, by key and checksum (reading a piece decoded it on every refresh).
RESULTS_DECODED = _declare("results_decoded", "1,024 entries and PROXY_CACHE_MAX_BYTES / 8 of their bytes")


class MetricNames:
    """Metric names visible to a caller (None: all), by token hash, until the caller's grant
    could have changed (the decision TTL) and never past the token's expiry."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float, clock: Callable[[], float] = time.time) -> None:
        """Entries live `ttl` seconds at most."""
        self._ttl = ttl
        self._clock = clock
        self._cache: TLRUCache[str, tuple[float, frozenset[str] | None]] = TLRUCache(
            self.MAX_ENTRIES, ttu=lambda _k, v, _now: v[0], timer=clock
        )

    def get(self, token_hash: str) -> tuple[bool, frozenset[str] | None]:
        """(found, names) for a caller."""
        hit = self._cache.get(token_hash)
        METRIC_NAMES.lookup(hit is not None)
        return (True, hit[1]) if hit is not None else (False, None)

    def put(self, token_hash: str, names: frozenset[str] | None, token_exp: float) -> None:
        """Remember a caller's names for the TTL, never past `token_exp`."""
        now = self._clock()
        until = min(now + self._ttl, token_exp)
        if until > now:
            self._cache[token_hash] = (until, names)
        METRIC_NAMES.entries = len(self._cache)


class _Collector(Collector):
    """Exports every declared cache's counts when scraped."""

    def collect(self) -> Iterator[Metric]:
        """The cache events and entries families."""
        events = CounterMetricFamily(
            "prom_keycloak_proxy_cache_events",
            "Cache lookups, by cache (the list in proxy/caches.py) and result (hit, miss).",
            labels=["cache", "result"],
        )
        entries = GaugeMetricFamily(
            "prom_keycloak_proxy_cache_entries", "Entries held, by cache.", labels=["cache"]
        )
        for stats in CACHES.values():
            hits, misses, size = stats.counts()
            events.add_metric([stats.name, "hit"], hits)
            events.add_metric([stats.name, "miss"], misses)
            entries.add_metric([stats.name], size)
        yield events
        yield entries

    def describe(self) -> Iterator[Metric]:
        """Nothing to describe ahead of time (the registry then calls `collect`)."""
        return iter(())


metrics.REGISTRY.register(_Collector())


def describe() -> list[dict[str, Any]]:
    """The cache list as data (name, bound, logged), e.g. for documentation checks."""
    return [{"name": s.name, "bound": s.bound, "logged": s.logged} for s in CACHES.values()]
