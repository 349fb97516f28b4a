"""Event-loop lag: how late a periodic timer fires, i.e. how long something blocked the loop.

The proxy's latency promise (docs: fair use, event-loop budget) is that no request blocks the loop
for more than ~100 ms; this histogram is how an operator (and `make bench`) sees whether it holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import Gauge, Histogram

from proxy.metrics import REGISTRY

# Bound at import: a test patching `asyncio.sleep` in its own module (which patches the asyncio
# module's attribute) must not turn the monitors of other running loops into busy loops.
_sleep = asyncio.sleep
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_SECONDS = Histogram(
    "prom_keycloak_proxy_event_loop_lag_seconds",
    "How late the event loop ran a timer that was due (time it was blocked by other work).",
    buckets=LAG_BUCKETS,
    registry=REGISTRY,
)
BLOCKED_SECONDS = Histogram(
    "prom_keycloak_proxy_event_loop_blocked_seconds",
    "Event-loop lag this process spent computing (lag bounded by the CPU time it used meanwhile): "
    "lag from the process's own work, not from waiting for a CPU on a busy machine.",
    buckets=LAG_BUCKETS,
    registry=REGISTRY,
)
LAG_MAX = Gauge(
    "prom_keycloak_proxy_event_loop_lag_max_seconds",
    "Largest event-loop lag seen since the process started.",
    registry=REGISTRY,
)


class LagMonitor:
    """Sample the loop's lateness every `interval` seconds into LAG_SECONDS (and `observed`)."""

    def __init__(
        self,
        interval: float = 0.02,
        observe: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._interval = interval
        self._observe = observe
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.max_lag = 0.0

    def start(self) -> None:
        """Start sampling on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-loop-lag")

    async def stop(self) -> None:
        """Stop sampling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        clock, interval, cpu = self._clock, self._interval, time.process_time
        while True:
            due = clock() + interval
            cpu_before = cpu()
            await _sleep(interval)
            lag = max(0.0, clock() - due)
            LAG_SECONDS.observe(lag)
            BLOCKED_SECONDS.observe(min(lag, cpu() - cpu_before))
            if lag > self.max_lag:
                self.max_lag = lag
                LAG_MAX.set(lag)
            if self._observe is not None:
                self._observe(lag)
