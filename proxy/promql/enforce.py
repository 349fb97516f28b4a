"""Decide, rewrite, print and verify: the only way PromQL text leaves the engine."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

from proxy.promql import nodes as n
from proxy.promql.analyse import Analysis
from proxy.promql.cache import BoundedLRU
from proxy.promql.errors import AccessDenied, NarrowingImpossible, QuerySyntaxError
from proxy.promql.limits import Limits
from proxy.promql.notices import warnings_for
from proxy.promql.policy import Held, Mode, Plan, granted_plan, guidance, plan_selector
from proxy.promql.printer import to_text
from proxy.promql.rewrite import Growth, account, apply, rewrap, rewrite, unwrap
from proxy.promql.scope import Holdings
from proxy.promql.verify import verify_query, verify_selector

# Which API a query is for: only `query` may fan a top-level range selector out (docs/authorization.md).
Endpoint = Literal["query", "query_range", "query_exemplars", "other"]
RANGE_QUERY_REFUSAL = (
    'invalid expression type "range vector" for range query, must be Scalar or instant Vector'
)


@dataclass(frozen=True, slots=True)
class Forward:
    """What goes upstream: verified texts (one, or one per fan-out branch) and warnings to add."""

    texts: tuple[str, ...]
    fan_out: bool = False
    warnings: tuple[str, ...] = ()


# Verified outputs by (analysis inputs, holdings, mode, endpoint); errors are never stored.
# Bounded by entries and by output bytes.
ENFORCE_CACHE: BoundedLRU[Forward] = BoundedLRU(max_entries=8192, max_weight=8 << 20)
_ENTRY_OVERHEAD = 256


def _cache_key(analysis: Analysis, holdings: Holdings, mode: Mode, endpoint: str) -> Hashable | None:
    if analysis.key is None:
        return None
    return (analysis.key, holdings, mode, endpoint)


def scaled_limits(limits: Limits, growth: Growth) -> Limits:
    """Guard limits for re-parsing output that grew by `growth` (union copies, added text)."""
    factor = 1 + growth.leaves
    return Limits(
        max_bytes=(limits.max_bytes + growth.added_bytes) * factor,
        max_depth=limits.max_depth + growth.union_depth,
        max_operators=(limits.max_operators + 1) * factor,
        max_regex_cost=(limits.max_regex_cost + growth.added_regex_cost) * factor,
        max_rewrite_bytes=limits.max_rewrite_bytes,
    )


def _bounded(text: str, limits: Limits) -> str:
    size = len(text.encode())
    if size > limits.max_rewrite_bytes:
        raise NarrowingImpossible(
            f"the narrowed query would be {size} bytes, over the proxy's bound of "
            f"{limits.max_rewrite_bytes} bytes (PROXY_MAX_REWRITE_BYTES)"
        )
    return text


def _bounded_total(size: int, limits: Limits) -> None:
    if size > limits.max_rewrite_bytes:
        raise NarrowingImpossible(
            f"the narrowed match[] selectors would be over {limits.max_rewrite_bytes} bytes "
            "together (PROXY_MAX_REWRITE_BYTES); ask for fewer selectors at once"
        )


def _cached(key: Hashable | None, build: _Builder) -> Forward:
    if key is not None:
        cached = ENFORCE_CACHE.get(key)
        if cached is not None:
            return cached
    forward = build()
    if key is not None:
        weight = sum(len(t) for t in forward.texts) + sum(len(w) for w in forward.warnings)
        ENFORCE_CACHE.put(key, forward, weight + _ENTRY_OVERHEAD * len(forward.texts))
    return forward


class _Builder:
    def __init__(self, analysis: Analysis, holdings: Holdings, mode: Mode, endpoint: Endpoint) -> None:
        self.analysis = analysis
        self.held = Held.of(holdings)
        self.holdings = holdings
        self.mode = mode
        self.endpoint = endpoint

    def __call__(self) -> Forward:
        return self.query() if self.analysis.kind == "query" else self.selectors()

    def _plans(self) -> tuple[list[Plan], tuple[str, ...]]:
        analysis, model, held = self.analysis, self.analysis.model, self.held
        plans = [plan_selector(sel, self.holdings, self.mode, model, held) for sel in analysis.selectors]
        narrowed = [s for s in analysis.selectors if granted_plan(s, held, model) is None]
        return plans, warnings_for(narrowed, held, model) if self.mode == "narrow" else ()

    def query(self) -> Forward:
        analysis, model, held = self.analysis, self.analysis.model, self.held
        tree = analysis.trees[0]
        if not analysis.has_selectors:
            if not held.anything():
                raise AccessDenied("you hold no access on this hub")
            text = to_text(tree)
            verify_query(tree, text, held, model, analysis.limits)
            return Forward((text,))
        plans, warnings = self._plans()
        core, _ = unwrap(tree)
        if isinstance(core, n.MatrixSelector) and len(plans[0]) > 1:
            return Forward(self._fan_out(tree, plans[0]), True, warnings)
        out, growth = rewrite(tree, plans, model)
        text = _bounded(to_text(out), analysis.limits)
        verify_query(tree, text, held, model, scaled_limits(analysis.limits, growth))
        return Forward((text,), False, warnings)

    def _fan_out(self, tree: n.Expr, plan: Plan) -> tuple[str, ...]:
        """One verified query per branch of a top-level range selector (`query`, and
        `query_exemplars`, whose answer is the exemplars of the selector's series)."""
        core, depth = unwrap(tree)
        assert isinstance(core, n.MatrixSelector)
        if self.endpoint == "query_range":
            raise QuerySyntaxError(RANGE_QUERY_REFUSAL)
        if self.endpoint not in ("query", "query_exemplars"):
            raise NarrowingImpossible(
                f"cannot narrow {to_text(core.vs)} in a range-vector position here; "
                + guidance(self.analysis.model, core.vs)
            )
        texts: list[str] = []
        for branch in plan:
            growth = Growth()
            account(growth, branch)
            out = rewrap(n.MatrixSelector(apply(core.vs, branch), core.range_ms), depth)
            text = _bounded(to_text(out), self.analysis.limits)
            limits = scaled_limits(self.analysis.limits, growth)
            verify_query(tree, text, self.held, self.analysis.model, limits)
            texts.append(text)
        return tuple(texts)

    def selectors(self) -> Forward:
        analysis, model, held = self.analysis, self.analysis.model, self.held
        plans, warnings = self._plans()
        # A dict keeps the first-seen order and dedups in O(1) (a list scan was quadratic); the
        # total rewritten bytes are bounded like a query's (docs: event-loop budget).
        forwarded: dict[str, None] = {}
        size = 0
        for sel, plan in zip(analysis.selectors, plans, strict=True):
            original: n.VectorSelector = sel.selector
            for branch in plan:
                growth = Growth()
                account(growth, branch)
                limits = scaled_limits(analysis.limits, growth)
                text = to_text(apply(original, branch))
                if text in forwarded:
                    continue
                size += len(text.encode())
                _bounded_total(size, analysis.limits)
                verify_selector(original, text, held, model, limits)
                forwarded[text] = None
        return Forward(tuple(forwarded), False, warnings)


def plan_query(analysis: Analysis, holdings: Holdings, mode: Mode, endpoint: Endpoint = "other") -> Forward:
    """The verified forwarding of a query: one text, or (on `query`) one per fan-out branch."""
    if analysis.kind != "query":
        raise TypeError("plan_query needs an analysis from analyse_query")
    key = _cache_key(analysis, holdings, mode, endpoint)
    return _cached(key, _Builder(analysis, holdings, mode, endpoint))


def plan_selectors(analysis: Analysis, holdings: Holdings, mode: Mode) -> Forward:
    """The verified match[] list (one selector per narrowing branch) and its warnings."""
    if analysis.kind != "selectors":
        raise TypeError("plan_selectors needs an analysis from analyse_selectors")
    key = _cache_key(analysis, holdings, mode, "selectors")
    return _cached(key, _Builder(analysis, holdings, mode, "other"))


def enforce_query(analysis: Analysis, holdings: Holdings, mode: Mode) -> str:
    """The single verified PromQL text to forward (no fan-out); raises the engine's errors."""
    return plan_query(analysis, holdings, mode).texts[0]


def enforce_selectors(analysis: Analysis, holdings: Holdings, mode: Mode) -> list[str]:
    """Verified match[] selectors to forward: one per selector, or one per narrowing branch."""
    return list(plan_selectors(analysis, holdings, mode).texts)
