"""Decide, rewrite, print and verify: the only way PromQL text leaves the engine."""

from __future__ import annotations

from proxy.promql import nodes as n
from proxy.promql.analyse import Analysis
from proxy.promql.errors import AccessDenied
from proxy.promql.limits import Limits
from proxy.promql.policy import Held, Mode, plan_selector
from proxy.promql.printer import to_text
from proxy.promql.rewrite import Growth, account, apply, rewrite
from proxy.promql.scope import Holdings
from proxy.promql.verify import verify_query, verify_selector


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
    tree = analysis.trees[0]
    model = analysis.model
    held = Held.of(holdings)
    if not analysis.has_selectors:
        if not held.anything():
            raise AccessDenied("you hold no access on this hub")
        text = to_text(tree)
        verify_query(tree, text, held, model, analysis.limits)
        return text
    plans = [plan_selector(sel, holdings, mode, model) for sel in analysis.selectors]
    out, growth = rewrite(tree, plans, model)
    text = to_text(out)
    verify_query(tree, text, held, model, scaled_limits(analysis.limits, growth))
    return text


def enforce_selectors(analysis: Analysis, holdings: Holdings, mode: Mode) -> list[str]:
    """Verified match[] selectors to forward: one per selector, or one per narrowing branch."""
    if analysis.kind != "selectors":
        raise TypeError("enforce_selectors needs an analysis from analyse_selectors")
    model = analysis.model
    held = Held.of(holdings)
    plans = [plan_selector(sel, holdings, mode, model) for sel in analysis.selectors]
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
