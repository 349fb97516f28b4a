"""Step grids, split pieces and stored extents of query_range answers (docs/caching.md). Pure.

All times are integer milliseconds. A step-aligned request's grid (start a multiple of step) is a
subset of one global grid per step, so pieces cut at the grid point nearest each multiple of the
split interval are the same for every request with that step: stored extents of a piece serve any
later request that covers part of it. Series keep the upstream's JSON values untouched (timestamps
in seconds as numbers, values as strings, native histograms as objects); they are only compared
through `round(t * 1000)`.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Series = dict[str, Any]
LabelKey = tuple[tuple[str, str], ...]
_KINDS = ("values", "histograms")
_MEMBERS = frozenset({"metric", *_KINDS})
_FORMAT = 1  # encoding version of stored entries


@dataclass(frozen=True, slots=True)
class Grid:
    """A query_range request's evaluation times: start, start+step, … ≤ end (end on the grid)."""

    start_ms: int
    end_ms: int
    step_ms: int


def grid_of(start_ms: int, end_ms: int, step_ms: int) -> Grid | None:
    """The request's grid; None unless step > 0, start is a multiple of step and start <= end."""
    if step_ms <= 0 or start_ms % step_ms or start_ms > end_ms:
        return None
    return Grid(start_ms, end_ms - (end_ms - start_ms) % step_ms, step_ms)


@dataclass(frozen=True, slots=True)
class Piece:
    """The grid points [first_ms, last_ms] of one split bucket."""

    bucket: int
    first_ms: int
    last_ms: int


def boundary_ms(bucket: int, step_ms: int, split_ms: int) -> int:
    """B(bucket): the multiple of step nearest bucket·split (a tie rounds up)."""
    return (2 * bucket * split_ms + step_ms) // (2 * step_ms) * step_ms


def bucket_of(t_ms: int, step_ms: int, split_ms: int) -> int:
    """The bucket b holding grid time t: B(b) <= t < B(b+1)."""
    # B(b) <= k·step  ⟺  2·b·split < (2k+1)·step; the largest such b, in integers.
    k = t_ms // step_ms
    return ((2 * k + 1) * step_ms - 1) // (2 * split_ms)


def pieces(grid: Grid, split_ms: int) -> list[Piece]:
    """The grid cut at the bucket boundaries B(b), which do not depend on the request's start."""
    if split_ms <= 0:
        raise ValueError("split interval must be positive")
    out: list[Piece] = []
    t = grid.start_ms
    while t <= grid.end_ms:
        bucket = bucket_of(t, grid.step_ms, split_ms)
        last = min(grid.end_ms, boundary_ms(bucket + 1, grid.step_ms, split_ms) - grid.step_ms)
        out.append(Piece(bucket, t, last))
        t = last + grid.step_ms
    return out


@dataclass(frozen=True, slots=True)
class Extent:
    """A stored stretch [first_ms, last_ms] of one piece's grid and the series' points within it."""

    first_ms: int
    last_ms: int
    step_ms: int
    series: list[Series]


def _on_grid(e: Extent, step_ms: int) -> bool:
    return e.step_ms == step_ms and e.first_ms % step_ms == 0 and (e.last_ms - e.first_ms) % step_ms == 0


def missing(piece: Piece, step_ms: int, have: Sequence[Extent]) -> list[tuple[int, int]]:
    """The [first, last] grid ranges of `piece` that no extent of `have` covers."""
    spans = sorted((e.first_ms, e.last_ms) for e in have if _on_grid(e, step_ms) and e.first_ms <= e.last_ms)
    gaps: list[tuple[int, int]] = []
    t = piece.first_ms
    for first, last in spans:
        if t > piece.last_ms:
            break
        if first > t:
            gaps.append((t, min(first - step_ms, piece.last_ms)))
        t = max(t, last + step_ms)
    if t <= piece.last_ms:
        gaps.append((t, piece.last_ms))
    return gaps


def label_key(metric: dict[str, str]) -> LabelKey:
    """Sort key reproducing Prometheus' labels.Compare: sorted (name, value) pairs in turn."""
    return tuple(sorted(metric.items()))


def _ms(point: list[Any]) -> int:
    """A validated point's time in milliseconds."""
    ms: int = round(point[0] * 1000)
    return ms


_MAX_SECONDS = 1e13  # beyond Prometheus' int64 milliseconds; also keeps NaN and ±Inf out


def _checked_points(
    points: Any, value_type: type, first_ms: int, last_ms: int, step_ms: int, strict: bool
) -> list[Any]:
    """`points` validated (grid times, strictly increasing), cut to [first, last]: the original
    list when nothing is cut. `strict`: a point outside the range is an error."""
    if type(points) is not list:
        raise ValueError("points are not a list")
    previous: float = -math.inf
    lo = hi = 0  # the slice of points inside [first, last]; they are contiguous, times increasing
    for i, p in enumerate(points):
        # exact types: JSON gives list/str/dict/int/float only, and a bool is no timestamp
        if type(p) is not list or len(p) != 2 or type(p[1]) is not value_type:
            raise ValueError("a point is not [time, value]")
        t = p[0]
        if type(t) is int:
            ms = t * 1000
        elif type(t) is float and -_MAX_SECONDS < t < _MAX_SECONDS:
            ms = round(t * 1000)
        else:
            raise ValueError(f"bad sample timestamp {t!r}")
        if ms <= previous or (ms - first_ms) % step_ms:
            raise ValueError("points off the step grid or out of order")
        previous = ms
        if ms < first_ms:
            lo = i + 1
        elif ms <= last_ms:
            hi = i + 1
        if strict and not first_ms <= ms <= last_ms:
            raise ValueError("a point outside its extent")
    if lo == 0 and hi == len(points):
        return points
    return points[lo:hi]


def _check_series(s: Any, first_ms: int, last_ms: int, step_ms: int, strict: bool) -> Series | None:
    """A validated copy of one series with only its points in [first, last]; None when none are.

    `strict`: a point outside the range is an error instead of being dropped."""
    if type(s) is not dict or type(s.get("metric")) is not dict or not s.keys() <= _MEMBERS:
        raise ValueError("a series is not {metric, values, histograms}")
    metric = s["metric"]
    if not all(type(k) is str and type(v) is str for k, v in metric.items()):
        raise ValueError("a label is not a string")
    out: Series = {"metric": metric}
    for kind, value_type in (("values", str), ("histograms", dict)):
        if kind in s and (kept := _checked_points(s[kind], value_type, first_ms, last_ms, step_ms, strict)):
            out[kind] = kept
    return out if len(out) > 1 else None


def _check_extent(first_ms: int, last_ms: int, step_ms: int, result: Any, strict: bool) -> Extent:
    if step_ms <= 0 or first_ms % step_ms or (last_ms - first_ms) % step_ms or first_ms > last_ms:
        raise ValueError("an extent off its step grid")
    if not isinstance(result, list):
        raise ValueError("a matrix is not a list")
    series = [c for s in result if (c := _check_series(s, first_ms, last_ms, step_ms, strict)) is not None]
    if len({label_key(s["metric"]) for s in series}) != len(series):
        raise ValueError("two series with the same labels")
    series.sort(key=lambda s: label_key(s["metric"]))
    return Extent(first_ms, last_ms, step_ms, series)


def extent_from_answer(first_ms: int, last_ms: int, step_ms: int, result: list[Series]) -> Extent:
    """The extent an upstream matrix for [first, last] stores; ValueError when it is malformed."""
    return _check_extent(first_ms, last_ms, step_ms, result, strict=False)


def _cut(points: list[Any], first_ms: int, last_ms: int) -> list[Any]:
    lo = bisect.bisect_left(points, first_ms, key=_ms)
    hi = bisect.bisect_right(points, last_ms, lo=lo, key=_ms)
    return points[lo:hi]


def trimmed(extent: Extent, first_ms: int, last_ms: int) -> list[Series]:
    """The extent's series restricted to [first, last] (series without points there left out)."""
    out: list[Series] = []
    for s in extent.series:
        cut: Series = {"metric": s["metric"]}
        for kind in _KINDS:
            if points := _cut(s.get(kind, []), first_ms, last_ms):
                cut[kind] = points
        if len(cut) > 1:
            out.append(cut)
    return out


def _overlay(group: list[Extent]) -> Extent:
    """One extent over the group's span; where extents overlap the later one's points win."""
    parts: list[tuple[int, list[Series]]] = []
    for i, e in enumerate(group):
        later = [
            (x.first_ms, x.last_ms)
            for x in group[i + 1 :]
            if x.first_ms <= e.last_ms and e.first_ms <= x.last_ms
        ]
        parts.append((e.first_ms, _without(e.series, later) if later else e.series))
    parts.sort(key=lambda part: part[0])  # mostly time order already: assemble then sorts nothing
    first = min(e.first_ms for e in group)
    last = max(e.last_ms for e in group)
    return Extent(first, last, group[0].step_ms, assemble(series for _, series in parts))


def _without(series: list[Series], spans: list[tuple[int, int]]) -> list[Series]:
    out: list[Series] = []
    for s in series:
        kept: Series = {"metric": s["metric"]}
        for kind in _KINDS:
            points = [p for p in s.get(kind, []) if not any(a <= _ms(p) <= b for a, b in spans)]
            if points:
                kept[kind] = points
        if len(kept) > 1:
            out.append(kept)
    return out


def union(extents: Sequence[Extent], max_extents: int = 8) -> list[Extent]:
    """Overlapping or adjacent (one step apart) extents merged, by first time; where they overlap
    the one later in `extents` wins. Only the `max_extents` newest in time (latest last) are kept."""
    order = sorted(range(len(extents)), key=lambda i: (extents[i].step_ms, extents[i].first_ms))
    spans: list[tuple[int, int, int]] = []  # per group: step, first, last
    members: list[list[int]] = []
    for i in order:
        e = extents[i]
        if spans:
            step, first, last = spans[-1]
            if e.step_ms == step and (e.first_ms - first) % step == 0 and e.first_ms <= last + step:
                spans[-1] = (step, first, max(last, e.last_ms))
                members[-1].append(i)
                continue
        spans.append((e.step_ms, e.first_ms, e.last_ms))
        members.append([i])
    groups = [[extents[i] for i in sorted(m)] for m in members]  # input order decides overlaps
    merged = [g[0] if len(g) == 1 else _overlay(g) for g in groups]
    newest = sorted(merged, key=lambda e: e.last_ms)[-max_extents:] if max_extents > 0 else []
    return sorted(newest, key=lambda e: (e.first_ms, e.step_ms))


def assemble(parts: Iterable[list[Series]]) -> list[Series]:
    """One matrix from consecutive, non-overlapping parts: series joined by label set, points in
    time order, series in Prometheus' order (so the result equals the upstream's own answer)."""
    joined: dict[LabelKey, Series] = {}
    unordered: set[tuple[LabelKey, str]] = set()  # joins whose parts came out of time order
    for part in parts:
        for s in part:
            key = label_key(s["metric"])
            into = joined.get(key)
            if into is None:
                joined[key] = into = {"metric": s["metric"]}
            for kind in _KINDS:
                if points := s.get(kind):
                    have = into.get(kind)
                    if have is None:
                        into[kind] = list(points)
                        continue
                    if _ms(points[0]) <= _ms(have[-1]):
                        unordered.add((key, kind))
                    have.extend(points)
    out: list[Series] = []
    for key in sorted(joined):
        s = joined[key]
        ordered: Series = {"metric": s["metric"]}  # the upstream's member order
        for kind in _KINDS:
            if kind in s:
                ordered[kind] = sorted(s[kind], key=_ms) if (key, kind) in unordered else s[kind]
        out.append(ordered)
    return out


def encode_extents(extents: Sequence[Extent]) -> bytes:
    """Compact JSON of the extents (the backend compresses it)."""
    doc = {"v": _FORMAT, "e": [[e.first_ms, e.last_ms, e.step_ms, e.series] for e in extents]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _int(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise ValueError(f"not an integer: {x!r}")
    return x


def decode_extents(raw: bytes) -> list[Extent]:
    """The extents `encode_extents` wrote; ValueError on anything malformed."""
    try:
        doc = json.loads(raw)
    except RecursionError as nested:
        raise ValueError("nested too deeply") from nested
    if not isinstance(doc, dict) or doc.get("v") != _FORMAT or not isinstance(doc.get("e"), list):
        raise ValueError("not a stored extents entry")
    out: list[Extent] = []
    for item in doc["e"]:
        if not isinstance(item, list) or len(item) != 4:
            raise ValueError("an extent is not [first, last, step, series]")
        first, last, step = (_int(x) for x in item[:3])
        out.append(_check_extent(first, last, step, item[3], strict=True))
    return out
