"""Decide, rewrite, print and verify: the only way PromQL text leaves the engine."""

from __future__ import annotations

from collections.abc import Hashable

from proxy.promql import nodes as n
from proxy.promql.analyse import Analysis
from proxy.promql.cache import BoundedLRU
from proxy.promql.errors import AccessDenied
from proxy.promql.limits import Limits
from proxy.promql.policy import Held, Mode, plan_selector
from proxy.promql.printer import to_text
from proxy.promql.rewrite import Growth, account, apply, rewrite
from proxy.promql.scope import Holdings
from proxy.promql.verify import verify_query, verify_selector

# Verified outputs by (analysis inputs, holdings, mode); errors are never stored. Bounded by
# entries and by output bytes.
ENFORCE_CACHE: BoundedLRU[str | tuple[str, ...]] = BoundedLRU(max_entries=8192, max_weight=8 << 20)
_ENTRY_OVERHEAD = 256


def _cache_key(analysis: Analysis, holdings: Holdings, mode: Mode) -> Hashable | None:
    if analysis.key is None:
        return None
    return (analysis.key, holdings, mode)


def scaled_limits(limits: Limits, growth: Growth) -> Limits:
    """Guard limits for re-parsing output that grew by `growth` (union copies, added text)."""
    factor = 1 + growth.leaves
    return Limits(
        max_bytes=(limits.max_bytes + growth.added_bytes) * factor,
        max_depth=limits.max_depth + growth.union_depth,
        max_operators=(limits.max_operators + 1) * factor,
        max_regex_cost=(limits.max_regex_cost + growth.added_regex_cost) * factor,
    )


def enforce_query(analysis: Analysis, holdings: Holdings, mode: Mode) -> str:
    """The verified PromQL to forward; raises AccessDenied / NarrowingImpossible / Verification."""
    if analysis.kind != "query":
        raise TypeError("enforce_query needs an analysis from analyse_query")
    key = _cache_key(analysis, holdings, mode)
    if key is not None:
        cached = ENFORCE_CACHE.get(key)
        if isinstance(cached, str):
            return cached
    text = _enforce_query(analysis, holdings, mode)
    if key is not None:
        ENFORCE_CACHE.put(key, text, len(text) + _ENTRY_OVERHEAD)
    return text


def _enforce_query(analysis: Analysis, holdings: Holdings, mode: Mode) -> str:
    tree = analysis.trees[0]
    model = analysis.model
    held = Held.of(holdings)
    if not analysis.has_selectors:
        if not held.anything():
            raise AccessDenied("you hold no access on this hub")
        text = to_text(tree)
        verify_query(tree, text, held, model, analysis.limits)
        return text
    plans = [plan_selector(sel, holdings, mode, model, held) for sel in analysis.selectors]
    out, growth = rewrite(tree, plans, model)
    text = to_text(out)
    verify_query(tree, text, held, model, scaled_limits(analysis.limits, growth))
    return text


def enforce_selectors(analysis: Analysis, holdings: Holdings, mode: Mode) -> list[str]:
    """Verified match[] selectors to forward: one per selector, or one per narrowing branch."""
    if analysis.kind != "selectors":
        raise TypeError("enforce_selectors needs an analysis from analyse_selectors")
    key = _cache_key(analysis, holdings, mode)
    if key is not None:
        cached = ENFORCE_CACHE.get(key)
        if isinstance(cached, tuple):
            return list(cached)
    forwarded = _enforce_selectors(analysis, holdings, mode)
    if key is not None:
        weight = sum(len(t) for t in forwarded) + _ENTRY_OVERHEAD * max(1, len(forwarded))
        ENFORCE_CACHE.put(key, tuple(forwarded), weight)
    return forwarded


def _enforce_selectors(analysis: Analysis, holdings: Holdings, mode: Mode) -> list[str]:
    model = analysis.model
    held = Held.of(holdings)
    plans = [plan_selector(sel, holdings, mode, model, held) for sel in analysis.selectors]
    forwarded: list[str] = []
    for sel, plan in zip(analysis.selectors, plans, strict=True):
        original: n.VectorSelector = sel.selector
        for branch in plan:
            growth = Growth()
            account(growth, branch)
            limits = scaled_limits(analysis.limits, growth)
            text = to_text(apply(original, branch))
            verify_selector(original, text, held, model, limits)
            if text not in forwarded:
                forwarded.append(text)
    return forwarded
