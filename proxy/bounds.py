"""Bounded work per request (docs: fair use, event-loop budget): cheap checks that run before any
parsing, so an oversized request is refused in microseconds and an allowed one stays within the
~100 ms the event loop may be held by one request on the build machine.

promql-parser holds the GIL, so the bounds are sizes, derived from measured costs: at most
`PROXY_MAX_MATCH_SELECTORS` `match[]` and `PROXY_MAX_QUERY_BYTES` of selectors per request, and
enforcement of many selectors in chunks with the loop yielded between them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

from proxy import errors

T = TypeVar("T")
# Prometheus' label-name syntax; matched in full (`$` would accept a trailing newline).
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Selectors enforced between two yields of the event loop: measured ≈ 1 ms each when a caller
# with many projects is narrowed (parse, rewrite, re-parse to verify), so a chunk stays under
# ≈ 10 ms; another caller's request, which needs a few loop turns, waits one chunk per turn.
SELECTOR_CHUNK = 8
# A request above this many selectors or bytes is "heavy": whether the caller holds anything at
# all is checked (from cached holdings) before the expensive analysis.
HEAVY_SELECTORS = 16
HEAVY_BYTES = 8192


def check_label_name(name: str) -> None:
    """400 unless `name` is a valid label name in full."""
    if not LABEL_NAME.fullmatch(name):
        raise errors.BadRequest(f"invalid label name {name!r}")


def check_matches(matches: Sequence[str], max_selectors: int, max_bytes: int) -> None:
    """400 for more than `max_selectors` `match[]`, or more than `max_bytes` of them together."""
    if len(matches) > max_selectors:
        raise errors.BadRequest(
            f"{len(matches)} match[] selectors, over the limit of {max_selectors} per request "
            "(PROXY_MAX_MATCH_SELECTORS)"
        )
    size = 0
    for m in matches:
        size += len(m.encode())
        if size > max_bytes:
            raise errors.BadRequest(
                f"match[] selectors over {max_bytes} bytes together (PROXY_MAX_QUERY_BYTES)"
            )


def is_heavy(matches: Sequence[str] = (), text: str = "") -> bool:
    """Whether a request's analysis is expensive enough to first check the caller holds anything."""
    if len(matches) > HEAVY_SELECTORS:
        return True
    return len(text) + sum(len(m) for m in matches) > HEAVY_BYTES


def chunks(items: Sequence[str], size: int = SELECTOR_CHUNK) -> Iterator[Sequence[str]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def in_chunks(
    items: Sequence[str], step: Callable[[Sequence[str]], Awaitable[list[T]]], max_output_bytes: int
) -> list[T]:
    """Run `step` on each chunk of `items`, yielding the event loop between chunks; the outputs
    concatenated without repeats, bounded in total size (400 past `max_output_bytes`)."""
    seen: dict[T, None] = {}
    size = 0
    for i, part in enumerate(chunks(items)):
        if i:
            await asyncio.sleep(0)  # other requests run between chunks
        for out in await step(part):
            if out in seen:
                continue
            size += len(str(out).encode())
            if size > max_output_bytes:
                raise errors.BadRequest(
                    f"the narrowed match[] selectors would be over {max_output_bytes} bytes together "
                    "(PROXY_MAX_REWRITE_BYTES); ask for fewer selectors at once"
                )
            seen[out] = None
    return list(seen)
