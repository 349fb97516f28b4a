"""The one fan-out (docs/authorization.md): a top-level range selector narrowed to several branches.

PromQL cannot return a union of matrices, so each branch is asked upstream on its own — all with
the same pinned `time`, inside the caller's single fair-use admission — and the matrices are
merged here: by full label set (`__name__` included; identical label sets are one series),
sorted as Prometheus sorts them, under one byte bound across every branch. Nothing else is ever
fanned out: merging per-branch aggregations would be wrong.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from proxy import errors

# Upstream branches asked at once for one caller's request (it holds one admission).
MAX_CONCURRENT_BRANCHES = 4


@dataclass(frozen=True, slots=True)
class BranchAnswer:
    """One branch's upstream answer: status, Content-Type and the (unencoded) body."""

    status: int
    content_type: str
    body: bytes


def pinned_time(
    url: Sequence[tuple[str, str]], body: Sequence[tuple[str, str]], now: float | None = None
) -> list[tuple[str, str]]:
    """`[("time", now)]` to add to every branch's URL when the caller sent no `time`, so every
    branch is evaluated at the same instant; `[]` when the caller gave one."""
    if any(k == "time" for k, _ in url) or any(k == "time" for k, _ in body):
        return []
    stamp = time.time() if now is None else now
    return [("time", f"{stamp:.3f}")]


async def run_branches(
    texts: Sequence[str], ask: Callable[[str], Awaitable[BranchAnswer]]
) -> list[BranchAnswer]:
    """Ask every branch (a few at a time), answers in branch order."""
    gate = asyncio.Semaphore(MAX_CONCURRENT_BRANCHES)

    async def one(text: str) -> BranchAnswer:
        async with gate:
            return await ask(text)

    return list(await asyncio.gather(*(one(t) for t in texts)))


def _key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    # Prometheus orders a matrix by labels.Compare: sorted (name, value) pairs, compared in turn
    return tuple(sorted(metric.items()))


def _decode(answer: BranchAnswer) -> dict[str, Any]:
    try:
        doc = json.loads(answer.body)
    except ValueError as exc:
        raise errors.UpstreamUnavailable("upstream answer could not be decoded") from exc
    if not isinstance(doc, dict):
        raise errors.UpstreamUnavailable("upstream answer could not be decoded")
    return doc


def _matrix(data: Any) -> list[dict[str, Any]]:
    if (
        not isinstance(data, dict)
        or data.get("resultType") != "matrix"
        or not isinstance(data.get("result"), list)
    ):
        raise errors.UpstreamUnavailable("a fanned-out branch did not answer a matrix")
    result: list[dict[str, Any]] = data["result"]
    return result


def merge(answers: Sequence[BranchAnswer], warnings: Sequence[str], max_bytes: int) -> BranchAnswer:
    """One answer for all branches: the first failing branch's answer as it is, else the merged
    matrix with the upstream's and the proxy's warnings; over `max_bytes` in total → 400."""
    total = sum(len(a.body) for a in answers)
    if total > max_bytes:
        raise errors.BadRequest(
            f"the {len(answers)} branches of this range selector answered {total} bytes, over the "
            f"proxy's bound of {max_bytes} bytes; add a cluster or namespace matcher or a shorter range"
        )
    for answer in answers:
        if answer.status != 200:
            return answer
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    notes: list[str] = []
    exemplars = False
    for answer in answers:
        doc = _decode(answer)
        data = doc.get("data")
        if doc.get("status") != "success":
            return answer
        # query_exemplars answers a list of {seriesLabels, exemplars}; query a matrix
        exemplars = isinstance(data, list)
        items, key = (data, "seriesLabels") if isinstance(data, list) else (_matrix(data), "metric")
        for item in items:
            series.setdefault(_key(item.get(key) or {}), item)
        for note in doc.get("warnings") or ():
            if isinstance(note, str) and note not in notes:
                notes.append(note)
    notes += [w for w in warnings if w not in notes]
    result = [series[k] for k in sorted(series)]
    merged: dict[str, Any] = {
        "status": "success",
        "data": result if exemplars else {"resultType": "matrix", "result": result},
    }
    if notes:
        merged["warnings"] = notes
    body = json.dumps(merged, separators=(",", ":"), ensure_ascii=False).encode()
    return BranchAnswer(200, "application/json", body)
