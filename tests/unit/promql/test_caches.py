"""Request-path performance: analysis and enforcement results are memoised, safely.

The same text (with the same limits and model) reuses the whole guard+parse+analyse work; the
same analysis with equal holdings and mode reuses the verified output. Errors are never cached,
and nothing cached for one caller's holdings is ever answered to another's.
"""

from __future__ import annotations

import dataclasses

import pytest

from proxy.promql import (
    AccessDenied,
    Holdings,
    LabelModel,
    Limits,
    QueryLimitError,
    QuerySyntaxError,
    analyse_query,
    analyse_selectors,
    enforce_query,
    enforce_selectors,
)
from proxy.promql.analyse import ANALYSIS_CACHE
from proxy.promql.cache import BoundedLRU
from proxy.promql.enforce import ENFORCE_CACHE

MODEL = LabelModel()
LIMITS = Limits()
Q = 'sum by (namespace) (DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",namespace="team-a"})'


def test_request_path_performance_same_text_reuses_the_analysis() -> None:
    """Equal inputs give the identical (frozen) Analysis; other limits or models do not."""
    first = analyse_query(Q, LIMITS, MODEL)
    assert analyse_query(Q, Limits(), LabelModel()) is first
    assert analyse_query(Q, Limits(max_depth=10), MODEL) is not first
    trusted = LabelModel(project_label_metrics={"exported_namespace": "DCGM_.*"})
    assert analyse_query(Q, LIMITS, trusted) is not first
    assert analyse_selectors(["up"], LIMITS, MODEL) is analyse_selectors(("up",), LIMITS, MODEL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.trees = ()  # type: ignore[misc]


def test_request_path_performance_errors_are_never_cached() -> None:
    """A refused text is refused again (fresh error), and raising the limit admits it."""
    before = len(ANALYSIS_CACHE)
    for _ in range(2):
        with pytest.raises(QuerySyntaxError):
            analyse_query("sum(", LIMITS, MODEL)
    query = "(" * 30 + "up" + ")" * 30
    with pytest.raises(QueryLimitError):
        analyse_query(query, LIMITS, MODEL)
    assert analyse_query(query, Limits(max_depth=40), MODEL).has_selectors
    assert len(ANALYSIS_CACHE) <= before + 1
    analysis = analyse_query('up{cluster="c9"}', LIMITS, MODEL)
    holder = Holdings(clusters=frozenset({"c1"}))
    for _ in range(2):
        with pytest.raises(AccessDenied):
            enforce_query(analysis, holder, "narrow")


def test_request_path_performance_enforcement_is_keyed_by_holdings_and_mode() -> None:
    """Cached outputs never cross callers: each holdings/mode gets its own verified text."""
    analysis = analyse_query("up", LIMITS, MODEL)
    hub = Holdings.everything()
    c1 = Holdings(clusters=frozenset({"c1"}))
    c2 = Holdings(clusters={"c2"})  # type: ignore[arg-type]
    assert enforce_query(analysis, hub, "narrow") == "up"
    assert enforce_query(analysis, c1, "narrow") == 'up{cluster="c1"}'
    assert enforce_query(analysis, c2, "narrow") == 'up{cluster="c2"}'
    assert enforce_query(analysis, Holdings(clusters=frozenset({"c1"})), "narrow") == 'up{cluster="c1"}'
    with pytest.raises(AccessDenied):
        enforce_query(analysis, c1, "deny")
    a = Holdings(projects={"c1": frozenset({"a"})})
    b = Holdings(projects={"c1": frozenset({"b"})})
    assert enforce_query(analysis, a, "narrow") != enforce_query(analysis, b, "narrow")


def test_request_path_performance_cached_selector_lists_are_fresh_copies() -> None:
    """enforce_selectors answers a new list each time; mutating it cannot poison the cache."""
    analysis = analyse_selectors(["up", "m"], LIMITS, MODEL)
    holder = Holdings(clusters=frozenset({"c1"}))
    first = enforce_selectors(analysis, holder, "narrow")
    first.append('evil{cluster!="c1"}')
    assert enforce_selectors(analysis, holder, "narrow") == ['up{cluster="c1"}', 'm{cluster="c1"}']


def test_request_path_performance_holdings_are_hashable_by_content() -> None:
    """Equal holdings (sets or frozensets, dict order) hash and compare equal; others differ."""
    one = Holdings(clusters={"c1"}, projects={"c2": {"a", "b"}, "c3": {"x"}})  # type: ignore[arg-type,dict-item]
    two = Holdings(clusters=frozenset({"c1"}), projects={"c3": frozenset({"x"}), "c2": frozenset({"b", "a"})})
    assert one == two and hash(one) == hash(two)
    assert one != Holdings(clusters=frozenset({"c1"}), projects={"c2": frozenset({"a"})})
    assert Holdings.everything() != Holdings.nothing()
    assert len({one, two, Holdings.nothing()}) == 2


def test_request_path_performance_caches_are_bounded() -> None:
    """The LRU keeps at most max_entries and max_weight, dropping least recently used first."""
    lru: BoundedLRU[str] = BoundedLRU(max_entries=3, max_weight=10)
    for key in "abc":
        lru.put(key, key.upper(), 2)
    assert lru.get("a") == "A"  # a is now most recent
    lru.put("d", "D", 2)
    assert lru.get("b") is None and len(lru) == 3
    lru.put("e", "E", 6)
    assert lru.weight <= 10 and lru.get("e") == "E"
    lru.put("huge", "H", 11)
    assert lru.get("huge") is None
    assert ANALYSIS_CACHE.max_weight <= 8 << 20 and ENFORCE_CACHE.max_weight <= 16 << 20
