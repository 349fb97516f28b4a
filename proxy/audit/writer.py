"""One audit writer per process: the request path enqueues, a background thread serialises and writes.

The request path only appends to a queue (no JSON encoding, no I/O, no lock held while writing), so
writing costs the request path next to nothing; a full queue or a failing sink drops the event and
counts it, and `healthy()` tells a writer configured as required to refuse requests instead.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import Counter

from proxy.audit.event import AuditEvent, unauthenticated_event
from proxy.audit.sinks import Sink
from proxy.metrics import REGISTRY

DROPPED = Counter(
    "proxy_audit_events_dropped",
    "Audit events that could not be written (queue full or write failed)",
    ["reason"],
    registry=REGISTRY,
)
log = structlog.get_logger(__name__)
WRITTEN = Counter("proxy_audit_events_written", "Audit lines written", registry=REGISTRY)

Tap = Callable[[str], None]
_taps: list[Tap] = []
# A flood of distinct sources (spoofed X-Forwarded-For) must not grow the aggregate without bound.
MAX_SOURCES_PER_MINUTE = 10_000
OVERFLOW_SOURCE = "(other sources)"
_STOP = object()
_FLUSH_401 = object()


def add_tap(tap: Tap) -> Callable[[], None]:
    """Also hand every written batch of lines to `tap` (the suite's log scan); returns a remover."""
    _taps.append(tap)
    return lambda: _taps.remove(tap)


class AuditWriter:
    """Queue + thread in front of a sink."""

    def __init__(
        self, sink: Sink, *, required: bool = False, max_queue: int = 65536, interval: float = 0.1
    ) -> None:
        self.sink = sink
        self.interval = interval
        self._wake = threading.Event()
        self.required = required
        self.max_queue = max_queue
        self.written = 0
        self.dropped = 0
        # Events whose full line could not be rendered (written as a reduced line instead).
        self.render_failed = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Each counter has one writing thread (the event loop / the writer), so none loses updates.
        self._enqueued = 0
        self._processed = 0
        self._failing = False
        self._unauth: dict[tuple[int, str], list[Any]] = {}
        self._thread: threading.Thread | None = None

    @property
    def _pending(self) -> int:
        return self._enqueued - self._processed

    # --- request path ------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Whether an event emitted now would be written (room in the queue, sink not failing)."""
        return not self._failing and self._pending < self.max_queue

    def emit(self, event: Any) -> bool:
        """Queue one event (an AuditEvent, a dict, or anything with `render() -> str`); False when
        it was dropped (and counted)."""
        if self._pending >= self.max_queue:
            self._drop("queue_full")
            return False
        self._enqueued += 1
        self._queue.put(event)
        return True

    def unauthenticated(self, source: str, route: str | None = None, now: float | None = None) -> None:
        """Count one 401 without credentials worth an event; written per source per minute."""
        minute = int((now if now is not None else time.time()) // 60)
        self._enqueued += 1
        self._queue.put(("401", minute, source, route))

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> AuditWriter:
        """Start the background thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float = 5.0, *, aggregates: bool = False) -> bool:
        """Wait until everything queued so far is written (tests, shutdown); with `aggregates`,
        also the 401 counts of the current minute."""
        if aggregates:
            self._enqueued += 1
            self._queue.put(_FLUSH_401)
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._pending > 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._pending <= 0

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (401 aggregates included), then stop the thread and the sink."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None
        else:
            self._drain_now()
        self.sink.close()

    # --- writer thread -----------------------------------------------------------------------

    def _drop(self, reason: str, n: int = 1) -> None:
        self.dropped += n
        DROPPED.labels(reason).inc(n)

    def _run(self) -> None:
        # The thread wakes on a cadence, never per event: a blocked `get` would be woken by every
        # request's `put` (a thread switch and a GIL hand-over each), which costs the event loop
        # far more than encoding the event does.
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            batch = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(i is _STOP for i in batch)
            flush = any(i is _FLUSH_401 for i in batch)
            for start in range(0, len(batch), 1024):
                self._write_batch([i for i in batch[start : start + 1024] if i is not _STOP])
            self._housekeeping(time.time(), final=stop or flush)
            if stop:
                return

    def _drain_now(self) -> None:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._write_batch([i for i in items if i is not _STOP])
        self._housekeeping(time.time(), final=True)

    def _write_batch(self, items: list[Any]) -> None:
        lines: list[str] = []
        try:
            for item in items:
                if item is _FLUSH_401:
                    continue
                if isinstance(item, tuple):
                    self._count_401(item)
                else:
                    line = self._encode(item)
                    if line is not None:
                        lines.append(line)
            self._write(lines)
        finally:
            # Counted whatever happened, so flush() and healthy() never wait on a lost item.
            self._processed += len(items)

    def _encode(self, item: Any) -> str | None:
        """The item's line; one that cannot be rendered is counted and written as what is
        known for sure (its `fallback()`), never lost silently and never ending the thread."""
        try:
            render = getattr(item, "render", None)
            if render is not None:
                return str(render())
            data = item.to_json() if isinstance(item, AuditEvent) else item
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        except Exception as exc:  # a bug in one event must not stop the stream
            self.render_failed += 1
            DROPPED.labels("render_failed").inc()
            log.error("audit_event_render_failed", error=repr(exc))
            fallback = getattr(item, "fallback", None)
            try:
                return str(fallback(exc)) if fallback is not None else None
            except Exception:
                return None

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        try:
            self.sink.write(text.encode("utf-8"))
        except Exception:  # any sink failure is a failed write: dropped and counted, the thread goes on
            self._failing = True
            self._drop("write_failed", len(lines))
            return
        self._failing = False
        self.written += len(lines)
        WRITTEN.inc(len(lines))
        for tap in list(_taps):
            tap(text)

    def _count_401(self, item: tuple[str, int, str, str | None]) -> None:
        _, minute, source, route = item
        key = (minute, source)
        if (
            key not in self._unauth
            and sum(1 for m, _ in self._unauth if m == minute) >= MAX_SOURCES_PER_MINUTE
        ):
            key = (minute, OVERFLOW_SOURCE)
        entry = self._unauth.setdefault(key, [0, route])
        entry[0] += 1

    def _housekeeping(self, now: float, *, final: bool) -> None:
        current = int(now // 60)
        closed = [k for k in self._unauth if final or k[0] < current]
        lines = []
        for key in sorted(closed):
            count, route = self._unauth.pop(key)
            lines.append(
                json.dumps(unauthenticated_event(key[1], key[0], count, route), separators=(",", ":"))
            )
        self._write(lines)
        try:
            self.sink.tick(now)
        except OSError:
            self._failing = True
