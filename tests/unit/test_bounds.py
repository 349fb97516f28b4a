"""Bounded work per request: label names in full, match[] count and bytes, chunked enforcement."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import pytest

from proxy import errors
from proxy.bounds import check_label_name, check_matches, in_chunks, is_heavy


@pytest.mark.parametrize("name", ["cluster\n", "cluster%0A", "9x", "", "a-b", "é"])
def test_label_name_must_match_in_full(name: str) -> None:
    """A trailing newline (which `$` would accept) or any other stray character is refused."""
    with pytest.raises(errors.BadRequest):
        check_label_name(name)


def test_valid_label_names_pass() -> None:
    """Prometheus' label-name syntax is accepted."""
    for name in ("cluster", "__name__", "_x9"):
        check_label_name(name)


def test_20000_match_selectors_are_refused_in_microseconds() -> None:
    """Over the count bound the refusal costs no parsing at all."""
    matches = [f'up{{instance="host-{i:05d}:9100"}}' for i in range(20000)]
    started = time.perf_counter()
    with pytest.raises(errors.BadRequest) as refused:
        check_matches(matches, 100, 12288)
    assert time.perf_counter() - started < 0.01
    assert "PROXY_MAX_MATCH_SELECTORS" in refused.value.message


def test_match_bytes_are_bounded_together() -> None:
    """100 selectors within the count but over the byte bound together are refused."""
    check_matches(["x" * 120] * 100, 100, 12288)
    with pytest.raises(errors.BadRequest) as refused:
        check_matches(["x" * 130] * 100, 100, 12288)
    assert "PROXY_MAX_QUERY_BYTES" in refused.value.message


def test_heavy_requests_are_recognised() -> None:
    """Many selectors or many bytes make a request heavy; a panel query is not."""
    assert not is_heavy(["up"], "")
    assert is_heavy(["up"] * 17)
    assert is_heavy(text="x" * 9000)


async def test_chunks_yield_the_loop_and_dedup_in_order() -> None:
    """Between chunks other tasks run; outputs keep first-seen order without repeats."""
    ticks: list[int] = []

    async def ticker() -> None:
        for i in range(100):
            ticks.append(i)
            await asyncio.sleep(0)

    async def step(part: Sequence[str]) -> list[str]:
        ticks.append(-1)
        return [p.upper() for p in part] + ["SHARED"]

    task = asyncio.create_task(ticker())
    out = await in_chunks([f"s{i}" for i in range(40)], step, 10_000)
    task.cancel()
    assert out[:2] == ["S0", "S1"] and out.count("SHARED") == 1 and len(out) == 41
    steps = [i for i, t in enumerate(ticks) if t == -1]
    assert len(steps) == 5 and all(b - a > 1 for a, b in itertools.pairwise(steps))


async def test_chunked_output_is_bounded_in_bytes() -> None:
    """The total output past the rewrite bound is a 400."""

    async def step(part: Sequence[str]) -> list[str]:
        return [p * 100 for p in part]

    with pytest.raises(errors.BadRequest) as refused:
        await in_chunks([f"{i:03d}" for i in range(100)], step, 20_000)
    assert "PROXY_MAX_REWRITE_BYTES" in refused.value.message
