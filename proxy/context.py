"""The request context: one object per request holding its log fields, phase timings, cache
outcomes and decision, reachable from anywhere in the request's task through one context variable.

The request middleware creates it and writes the request's log line (and runs the end-of-request
hooks) from it; handlers, caches, Keycloak and upstream calls only add to it.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.audit.hook import AuditNotes
    from proxy.promql import Reach

_perf = time.perf_counter


@dataclass(slots=True, eq=False)
class RequestContext:
    """What one request did: who, which hub, what it could reach, the decision, where time went."""

    request_id: str
    method: str
    route: str
    # The hub this request is for: the configured one (PROXY_ACM_HUB) until several are served.
    hub: str
    started: float = field(default_factory=_perf)
    subject: str | None = None
    reach: Reach | None = None
    decision: str | None = None
    status: int = 500
    error: str | None = None
    cause: str | None = None
    trace_id: str | None = None
    # Whether the request holds its one upstream admission now (nested upstream calls take none).
    admitted: bool = False
    # Per-phase milliseconds (authn, authz, keycloak, upstream), summed over repeats.
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Per-cache outcome ("hit" or "miss"; a miss sticks) of the caches noted on the log line.
    caches: dict[str, str] = field(default_factory=dict)
    # The results cache's outcome (docs/caching.md): hit, partial, miss, bypass, off, coalesced.
    result_cache: str | None = None
    # What the audit event needs beyond the above (proxy.audit.hook.AuditNotes); None when off.
    audit: AuditNotes | None = None

    def add_time(self, phase: str, seconds: float) -> None:
        """Add `seconds` to the request's `<phase>_ms`."""
        timings = self.timings_ms
        timings[phase] = timings.get(phase, 0.0) + seconds * 1000.0

    def phase(self, name: str) -> Phase:
        """A context manager timing a block as phase `name` (also when the block raises)."""
        return Phase(self, name)

    def cache(self, name: str, hit: bool) -> None:
        """Record one lookup of cache `name`; a miss is not undone by a later hit."""
        if self.caches.get(name) != "miss":
            self.caches[name] = "hit" if hit else "miss"

    def refused(self, message: str, cause: BaseException | None) -> None:
        """Note why the request was refused (and, for outages, the underlying cause's type)."""
        self.error = message
        if cause is not None:
            self.cause = type(cause).__name__

    def elapsed(self) -> float:
        """Seconds since the request started."""
        return _perf() - self.started

    def log_fields(self) -> dict[str, Any]:
        """The fields of the request's log line beyond method, route, status and duration."""
        out: dict[str, Any] = {"hub": self.hub}
        if self.subject is not None:
            out["subject"] = self.subject
        reach = self.reach
        if reach is not None:
            out["clusters"] = sorted(reach.clusters)
            out["namespaces"] = sorted({p for ps in reach.projects.values() for p in ps})
        if self.decision is not None:
            out["decision"] = self.decision
        if self.error is not None:
            out["error"] = self.error
        if self.cause is not None:
            out["cause"] = self.cause
        for phase, ms in self.timings_ms.items():
            out[phase + "_ms"] = round(ms, 3)
        if self.caches:
            for name, result in self.caches.items():
                out["cache_" + name] = result
            out["cache_hit"] = "miss" not in self.caches.values()
        if self.result_cache is not None:
            out["result_cache"] = self.result_cache
        if self.trace_id is not None:
            out["trace_id"] = self.trace_id
        return out


class Phase:
    """Adds the wall time of a block to a request's `<phase>_ms`."""

    __slots__ = ("_ctx", "_name", "_started")

    def __init__(self, ctx: RequestContext, name: str) -> None:
        """Time phase `name` of `ctx`."""
        self._ctx, self._name, self._started = ctx, name, 0.0

    def __enter__(self) -> Phase:
        """Start the clock."""
        self._started = _perf()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the clock and add the elapsed time."""
        self._ctx.add_time(self._name, _perf() - self._started)


# The context of the request being handled in this task (None outside a request).
_CURRENT: ContextVar[RequestContext | None] = ContextVar("proxy_request", default=None)


def current() -> RequestContext | None:
    """The context of the request being handled in this task, or None outside a request."""
    return _CURRENT.get()


def require() -> RequestContext:
    """The current request's context; only called where the request middleware made one."""
    ctx = _CURRENT.get()
    if ctx is None:
        raise RuntimeError("no request context: the request middleware is not installed")
    return ctx


def enter(ctx: RequestContext) -> None:
    """Make `ctx` the current request's context (each request runs in its own task)."""
    _CURRENT.set(ctx)


def add_time(phase: str, seconds: float) -> None:
    """Add `seconds` to the current request's `<phase>_ms` (no-op outside a request)."""
    ctx = _CURRENT.get()
    if ctx is not None:
        ctx.add_time(phase, seconds)


def note_cache(name: str, hit: bool) -> None:
    """Record a cache lookup on the current request (no-op outside a request)."""
    ctx = _CURRENT.get()
    if ctx is not None:
        ctx.cache(name, hit)
