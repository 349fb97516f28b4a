"""Stretches of a range's step grid: what to fetch, what to rewrite, how stored and fetched
stretches make up a request's points (pure; docs/caching.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.results.extents import Extent, Grid, trimmed


def points(extents: Sequence[Extent]) -> int:
    """Grid points the extents cover."""
    return sum((e.last_ms - e.first_ms) // e.step_ms + 1 for e in extents)


def only_a_short_tail(have: Sequence[Extent], merged: Sequence[Extent], every: int) -> bool:
    """True when `merged` adds to `have` only fewer than `every` points after its end (a
    refresh's step or two); anything earlier, or a longer tail, is worth rewriting the entry."""
    step = merged[0].step_ms
    tail = (max(e.last_ms for e in merged) - max(e.last_ms for e in have)) // step
    return points(merged) - points(have) == tail < every


def outcome_of(fetches: int, held: int) -> str:
    """hit (nothing fetched), partial (some stored, some fetched) or miss."""
    if not fetches:
        return "hit"
    return "partial" if held else "miss"


def joined(gaps: Sequence[tuple[int, int]], step_ms: int) -> list[tuple[int, int]]:
    """Missing stretches in time order, adjacent ones (across piece boundaries) asked at once."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(gaps):
        if out and first <= out[-1][1] + step_ms:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def consecutive(extents: Sequence[Extent], grid: Grid) -> list[list[dict[str, Any]]] | None:
    """The request's grid points, each taken once, from extents that may overlap; None when a
    stretch is not covered (never expected: the caller forwards the request, never guesses)."""
    parts: list[list[dict[str, Any]]] = []
    covered = grid.start_ms - grid.step_ms
    for extent in sorted(extents, key=lambda e: (e.first_ms, -e.last_ms)):
        first = max(extent.first_ms, covered + grid.step_ms)
        last = min(extent.last_ms, grid.end_ms)
        if first > last:
            continue
        if first > covered + grid.step_ms:
            return None
        parts.append(trimmed(extent, first, last))
        covered = last
    return parts if covered >= grid.end_ms else None
