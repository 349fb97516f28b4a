"""Per-request log fields reachable from anywhere in the request's task, and phase timers.

The request middleware makes one dict per request the "current fields" (a context variable);
`timed(request, "authn")` adds the phase's duration to it as `authn_ms`, and code that has no
request at hand (caches, Keycloak and upstream calls) adds to it through `note_current`.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

# The log fields of the request being handled in this task (None outside a request).
CURRENT_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("proxy_request_fields", default=None)

_perf = time.perf_counter


def note_current(**fields: Any) -> None:
    """Add fields to the current request's log line (no-op outside a request)."""
    current = CURRENT_FIELDS.get()
    if current is not None:
        current.update(fields)


def add_duration(phase: str, seconds: float) -> None:
    """Add `seconds` to the current request's `<phase>_ms` (phases repeat, e.g. two upstream calls)."""
    current = CURRENT_FIELDS.get()
    if current is not None:
        key = phase + "_ms"
        current[key] = round(current.get(key, 0.0) + seconds * 1000.0, 3)


def note_cache(cache: str, result: str) -> None:
    """Record one cache lookup of the current request as `cache_<name>` and keep `cache_hit` current.

    `result` is "hit" or "miss"; a miss sticks (a later hit on the same cache does not undo it),
    and `cache_hit` is true while every lookup of the request so far was a hit.
    """
    current = CURRENT_FIELDS.get()
    if current is not None:
        key = "cache_" + cache
        if current.get(key) != "miss":
            current[key] = result
        current["cache_hit"] = result == "hit" and current.get("cache_hit", True)


class timed:
    """Context manager adding the wall time of a block to the request's `<phase>_ms` log field."""

    __slots__ = ("_fields", "_key", "_started")

    def __init__(self, request: web.Request, phase: str) -> None:
        """Time `phase` of `request`; the field is `<phase>_ms`, summed over repeats."""
        self._fields = CURRENT_FIELDS.get()
        self._key = phase + "_ms"
        self._started = 0.0

    def __enter__(self) -> timed:
        """Start the clock."""
        self._started = _perf()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the clock and add the elapsed milliseconds (also when the block raised)."""
        fields = self._fields
        if fields is not None:
            elapsed = (_perf() - self._started) * 1000.0
            fields[self._key] = round(fields.get(self._key, 0.0) + elapsed, 3)
