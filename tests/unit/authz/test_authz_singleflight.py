"""Single flight: shared execution, shared failure, cancellation isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from proxy.singleflight import SingleFlight


async def test_concurrent_callers_share_one_execution() -> None:
    """Callers with the same key get one run's result; other keys run separately."""
    runs: list[str] = []
    flight: SingleFlight[str, str] = SingleFlight()

    async def work(key: str) -> str:
        """Record the run, then answer."""
        runs.append(key)
        await asyncio.sleep(0.05)
        return key.upper()

    def call(key: str) -> Awaitable[str]:
        """Join the flight for `key`."""
        return flight.do(key, lambda: work(key))

    results = await asyncio.gather(*(call(k) for k in ["a"] * 10 + ["b"] * 5))
    assert results == ["A"] * 10 + ["B"] * 5
    assert sorted(runs) == ["a", "b"]
    assert len(flight) == 0


async def test_failure_reaches_every_waiter_and_is_not_kept() -> None:
    """An exception is raised to all concurrent callers; the next call runs again."""
    calls = 0
    flight: SingleFlight[str, int] = SingleFlight()

    async def fail() -> int:
        """Record the run, then fail."""
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")

    outcomes = await asyncio.gather(*(flight.do("k", fail) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    with pytest.raises(RuntimeError):
        await flight.do("k", fail)
    assert calls == 2


async def test_cancelled_caller_does_not_cancel_the_others() -> None:
    """One caller timing out leaves the shared work running for the rest."""
    flight: SingleFlight[str, str] = SingleFlight()

    async def slow() -> str:
        """Answer after a while."""
        await asyncio.sleep(0.1)
        return "done"

    impatient = asyncio.create_task(flight.do("k", slow))
    patient = asyncio.create_task(flight.do("k", slow))
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert await patient == "done"
