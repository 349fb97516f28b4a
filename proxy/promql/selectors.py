"""What one vector selector can reach: finite label-value sets under Prometheus matcher rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from proxy.promql import nodes as n
from proxy.promql.regex import literal_alternation
from proxy.promql.scope import LabelModel

NAME_LABEL = "__name__"


def iter_selectors(e: n.Expr) -> Iterator[n.VectorSelector]:
    """Every vector selector of `e` in the canonical order rewrite and analysis share."""
    stack: list[n.Expr] = [e]
    while stack:
        node = stack.pop()
        if isinstance(node, n.VectorSelector):
            yield node
        elif isinstance(node, n.MatrixSelector):
            yield node.vs
        elif isinstance(node, n.Call):
            stack.extend(reversed(node.args))
        elif isinstance(node, n.Binary):
            stack.append(node.rhs)
            stack.append(node.lhs)
        elif isinstance(node, n.Aggregate):
            stack.append(node.expr)
            if node.param is not None:
                stack.append(node.param)
        elif isinstance(node, n.Paren | n.Unary | n.Subquery):
            stack.append(node.expr)


def matchers_on(vs: n.VectorSelector, label: str) -> list[n.Matcher]:
    """The selector's matchers on `label`, the metric name counting as `__name__=`."""
    found = [m for m in vs.matchers if m.name == label]
    if label == NAME_LABEL and vs.name is not None:
        found.append(n.Matcher("=", NAME_LABEL, vs.name))
    return found


def accepts(m: n.Matcher, value: str) -> bool | None:
    """Whether matcher `m` accepts `value` ("" = label absent); None when not decidable here."""
    if m.op == "=":
        return value == m.value
    if m.op == "!=":
        return value != m.value
    finite = literal_alternation(m.value)
    if finite is None:
        return None
    return (value in finite) == (m.op == "=~")


def value_set(vs: n.VectorSelector, label: str) -> frozenset[str] | None:
    """The finite set of values `label` can take on series `vs` selects, or None if unbounded.

    Finite only through `=` and literal-alternation `=~` matchers (intersected); other matchers
    can only remove values. "" in the set means series lacking the label are reachable.
    """
    found = matchers_on(vs, label)
    sets = _literal_sets(found)
    finite: frozenset[str] | None = None
    for m in found:
        if m.op == "=":
            values: frozenset[str] | None = frozenset((m.value,))
        elif m.op == "=~":
            values = sets[id(m)]
        else:
            values = None
        if values is not None:
            finite = values if finite is None else finite & values
    if finite is None:
        return None
    return not_refused(found, finite, sets)


def _literal_sets(found: Sequence[n.Matcher]) -> dict[int, frozenset[str] | None]:
    """Each regex matcher's literal set, read once (by matcher identity)."""
    return {id(m): literal_alternation(m.value) for m in found if m.op in ("=~", "!~")}


def not_refused(
    found: Sequence[n.Matcher],
    values: Iterable[str],
    sets: dict[int, frozenset[str] | None] | None = None,
) -> frozenset[str]:
    """The `values` none of `found` refuses for certain (same answers as `accepts`). Each regex
    is read once: a narrowed selector's regex lists every held project, and re-reading it per
    value made planning quadratic in the caller's holdings (docs/operations.md, event-loop budget)."""
    sets = _literal_sets(found) if sets is None else sets

    def refuses(m: n.Matcher, value: str) -> bool:
        if m.op not in ("=~", "!~"):
            return accepts(m, value) is False
        listed = sets[id(m)]
        return listed is not None and (value in listed) != (m.op == "=~")

    return frozenset(v for v in values if not any(refuses(m, v) for m in found))


@lru_cache(maxsize=256)
def trust_pattern(regex: str) -> re.Pattern[str] | None:
    """The compiled trust regex (ASCII classes, as RE2), or None when Python cannot read it."""
    try:
        return re.compile(regex, re.ASCII)
    except re.error:
        return None  # an operator regex Python cannot read trusts nothing (fail closed)


def label_trusted(vs: n.VectorSelector, label: str, model: LabelModel) -> bool:
    """Whether a project grant through `label` counts for `vs` (PROXY_PROJECT_LABEL_METRICS)."""
    regex = model.project_label_metrics.get(label)
    if regex is None:
        return True
    if any(m.op == "=~" and m.value == regex for m in matchers_on(vs, NAME_LABEL)):
        return True  # the selector itself is restricted to the trusted metric names
    names = value_set(vs, NAME_LABEL)
    pattern = trust_pattern(regex)
    if names is None or not names or pattern is None:
        return False
    return all(pattern.fullmatch(name) is not None for name in names)


@dataclass(frozen=True, slots=True)
class SelectorReach:
    """The cluster, project and metric-name sets one selector can reach (None = unbounded)."""

    selector: n.VectorSelector
    clusters: frozenset[str] | None
    projects: tuple[frozenset[str] | None, ...]  # parallel to LabelModel.project_labels
    names: frozenset[str] | None


def reach_of(vs: n.VectorSelector, model: LabelModel) -> SelectorReach:
    """Compute the reach of one selector under `model`."""
    return SelectorReach(
        vs,
        value_set(vs, model.cluster_label),
        tuple(value_set(vs, label) for label in model.project_labels),
        value_set(vs, NAME_LABEL),
    )
