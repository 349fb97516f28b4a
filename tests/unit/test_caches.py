"""`proxy.caches`: every request-path cache is declared in one list, bounded, and counted."""

from __future__ import annotations

import re
from pathlib import Path

from proxy import caches, metrics
from proxy.caches import MetricNames

PACKAGE = Path(caches.__file__).parent
_KINDS = "lru_cache|TTLCache|TLRUCache|LRUCache|BoundedLRU|until_cache"
CACHE_CONSTRUCTORS = re.compile(rf"(?<!class )(?<!def )\b({_KINDS})(\[[^]]*\])?\(|@(functools\.)?cache\b")
# Where a cache object is built, and which declared cache(s) it is; anything else on the request
# path must be added to proxy/caches.py (and here) or fail this test.
BUILT_IN = {
    "caches.py": {"metric_names"},
    "promql/parse.py": {"parse"},
    "promql/selectors.py": {"trust_pattern"},
    "promql/analyse.py": {"analysis"},
    "promql/enforce.py": {"enforce"},
    "authn/bearer.py": {"token"},
    "authn/basic.py": {"basic"},
    "authn/introspect.py": {"introspect"},
    "authz/decisions.py": {"allow", "deny", "holdings"},
    "results/cache.py": {"results_decoded"},
}
# Not request-path result caches: Basic-auth failure memory and guessing windows, per-subject
# windows of cold Keycloak decisions (rate state, not answers), the secret method learned per
# client id, and the operator CLIs. (The resource catalog, `authz/catalog.py`, is one table
# counted as the `resource` cache; it builds no cache object.)
NOT_CACHES = {"authn/ratelimit.py", "keycloak_load.py", "keycloak_client.py"}
NOT_REQUEST_PATH = ("policies/", "audit/")


def test_every_cache_constructor_is_a_declared_cache() -> None:
    """No module builds a cache that proxy/caches.py does not list."""
    found: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in NOT_CACHES or rel.startswith(NOT_REQUEST_PATH):
            continue
        if CACHE_CONSTRUCTORS.search(path.read_text()):
            assert rel in BUILT_IN, f"{rel} builds a cache that proxy/caches.py does not declare"
            found.add(rel)
    assert found == set(BUILT_IN)
    declared = set().union(*BUILT_IN.values()) | {"quoted", "results"}
    assert declared <= set(caches.CACHES)


def test_each_cache_states_its_bound() -> None:
    """Every declared cache says what bounds it."""
    for row in caches.describe():
        assert any(ch.isdigit() for ch in row["bound"]) or "PROXY_" in row["bound"], row


def test_memo_counts_hits_and_misses() -> None:
    """A memoised function's lookups show up in the cache events metric when scraped."""
    stats = caches.CacheStats("t_memo", "2 entries")
    caches.CACHES["t_memo"] = stats
    try:

        def twice(x: int) -> int:
            return 2 * x

        double = caches.memo(stats, 2)(twice)
        assert [double(1), double(1), double(2)] == [2, 2, 4]
        hits = metrics.REGISTRY.get_sample_value(
            "prom_keycloak_proxy_cache_events_total", {"cache": "t_memo", "result": "hit"}
        )
        entries = metrics.REGISTRY.get_sample_value("prom_keycloak_proxy_cache_entries", {"cache": "t_memo"})
        assert (hits, stats.counts()) == (1, (1, 2, 2)) and entries == 2
    finally:
        del caches.CACHES["t_memo"]


def test_metric_names_live_for_the_ttl_and_never_past_the_token() -> None:
    """A caller's names are kept for the decision TTL, never past the token's expiry."""
    now = [1000.0]
    names = MetricNames(ttl=60.0, clock=lambda: now[0])
    names.put("a", frozenset({"up"}), token_exp=2000.0)
    names.put("b", None, token_exp=1010.0)
    names.put("gone", frozenset(), token_exp=999.0)
    assert names.get("a") == (True, frozenset({"up"})) and names.get("b") == (True, None)
    assert names.get("gone") == (False, None)
    now[0] = 1011.0
    assert names.get("b") == (False, None) and names.get("a")[0]
    now[0] = 1061.0
    assert names.get("a") == (False, None)
