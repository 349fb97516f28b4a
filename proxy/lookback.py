"""The time reach of a query (docs: fair use, query size): how far back and forward it reads.

`PROXY_MAX_LOOKBACK` (off by default) bounds the whole window a request reads, not only the
query_range span: `rate(x[30d])` over a 30-day range reads 60 days, and `offset`, subqueries and
`@` move or widen the window too. Pure: works on the engine's parsed trees.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy import errors
from proxy.durations import format_duration
from proxy.promql import nodes as n


def _children(node: n.Expr) -> Iterable[n.Expr]:
    if isinstance(node, n.Call):
        return node.args
    if isinstance(node, n.Aggregate):
        return (node.expr,) if node.param is None else (node.expr, node.param)
    if isinstance(node, n.Binary):
        return (node.lhs, node.rhs)
    if isinstance(node, n.Paren | n.Unary):
        return (node.expr,)
    return ()


def _pinned(at: n.At | None, lo: float, hi: float, start: float, end: float) -> tuple[float, float]:
    """Evaluation times after an `@` modifier."""
    if at is None:
        return lo, hi
    t = start if at.kind == "start" else end if at.kind == "end" else at.ms / 1000
    return t, t


def window(node: n.Expr, lo: float, hi: float, start: float, end: float) -> tuple[float, float] | None:
    """(earliest, latest) sample time `node` reads when evaluated at times in [lo, hi]; None when
    it reads no series. `start`/`end` are the request's (for `@ start()` / `@ end()`)."""
    if isinstance(node, n.VectorSelector | n.MatrixSelector):
        vs = node.vs if isinstance(node, n.MatrixSelector) else node
        rng = node.range_ms / 1000 if isinstance(node, n.MatrixSelector) else 0.0
        t_lo, t_hi = _pinned(vs.at, lo, hi, start, end)
        offset = (vs.offset_ms or 0) / 1000
        return t_lo - offset - rng, t_hi - offset
    if isinstance(node, n.Subquery):
        t_lo, t_hi = _pinned(node.at, lo, hi, start, end)
        offset = (node.offset_ms or 0) / 1000
        return window(node.expr, t_lo - offset - node.range_ms / 1000, t_hi - offset, start, end)
    spans = [w for child in _children(node) if (w := window(child, lo, hi, start, end)) is not None]
    if not spans:
        return None
    return min(w[0] for w in spans), max(w[1] for w in spans)


def reach(trees: Iterable[n.Expr], start: float, end: float) -> float:
    """Seconds between the earliest and the latest time a request over [start, end] touches."""
    earliest, latest = start, end
    for tree in trees:
        w = window(tree, start, end, start, end)
        if w is not None:
            earliest, latest = min(earliest, w[0]), max(latest, w[1])
    return latest - earliest


def check_lookback(trees: Iterable[n.Expr], start: float, end: float, limit: float) -> None:
    """400 when the request's reach exceeds `limit` seconds (0: no limit)."""
    if limit <= 0:
        return
    seconds = reach(trees, start, end)
    if seconds > limit:
        raise errors.BadRequest(
            f"the query reads {format_duration(seconds)} of data (range, selector ranges, subqueries "
            f"and offsets together), over the limit of {format_duration(limit)} (PROXY_MAX_LOOKBACK)"
        )


def _nodes(node: n.Expr) -> Iterable[n.Expr]:
    """`node` and every node below it, selectors inside range selectors and subqueries included."""
    yield node
    inner: Iterable[n.Expr] = _children(node)
    if isinstance(node, n.MatrixSelector):
        inner = (node.vs,)
    elif isinstance(node, n.Subquery):
        inner = (node.expr,)
    for child in inner:
        yield from _nodes(child)


def cache_bypass(trees: Iterable[n.Expr]) -> str | None:
    """Why the results cache must not store these trees' answers (docs/caching.md), else None.

    With `@` a point's value depends on a fixed time (with `start()`/`end()`, on the request's own
    range, which differs for every piece fetched); a negative offset reads data newer than the
    evaluation time. Either way a stored point is not the value any other request would get."""
    for tree in trees:
        for node in _nodes(tree):
            if not isinstance(node, n.VectorSelector | n.Subquery):
                continue
            if node.at is not None:
                return "start()/end()" if node.at.kind in ("start", "end") else "@ modifier"
            if (node.offset_ms or 0) < 0:
                return "negative offset"
    return None


def newest_touch_ms(trees: Iterable[n.Expr], t_ms: int) -> int:
    """The latest sample time that evaluating the trees at `t_ms` reads (`t_ms` when they read no
    series): an answer is final once this is older than the freshness window."""
    t = t_ms / 1000
    latest = [w[1] for tree in trees if (w := window(tree, t, t, t, t)) is not None]
    return round(max(latest) * 1000) if latest else t_ms
