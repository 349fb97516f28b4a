"""The event-loop lag monitor: wall-clock lag, and the part of it the process spent computing."""

from __future__ import annotations

import asyncio
import time

from proxy.looplag import BLOCKED_SECONDS, LagMonitor


def _blocked_over(seconds: float) -> float:
    """Observations of the blocked histogram above `seconds` so far."""
    (metric,) = BLOCKED_SECONDS.collect()
    samples = {s.labels.get("le"): float(s.value) for s in metric.samples if s.name.endswith("_bucket")}
    return samples["+Inf"] - samples[str(seconds)]


async def test_lag_counts_a_blocked_loop_and_blocked_counts_only_own_work() -> None:
    """Sleeping the thread (as if preempted) is lag but not blocked time; spinning is both."""
    lags: list[float] = []
    monitor = LagMonitor(interval=0.01, observe=lags.append)
    monitor.start()
    await asyncio.sleep(0.05)
    over = _blocked_over(0.1)
    time.sleep(0.2)  # noqa: ASYNC251 - the loop is stuck, but this process computes nothing
    await asyncio.sleep(0.05)
    assert max(lags) >= 0.15
    assert _blocked_over(0.1) == over
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # the loop is stuck computing (0.2 s of CPU)
        pass
    await asyncio.sleep(0.05)
    await monitor.stop()
    assert _blocked_over(0.1) == over + 1
    assert monitor.max_lag >= 0.15
