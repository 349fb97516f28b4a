"""Single flight: concurrent calls with the same key share one execution and its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Run at most one coroutine per key at a time; every concurrent caller gets its result."""

    def __init__(self) -> None:
        """Start with nothing in flight."""
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        """How many keys are in flight now."""
        return len(self._tasks)

    async def do(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> V:
        """Join the flight for `key`, starting `work()` if none is running."""
        task = self._tasks.get(key)
        # A task that finished but whose clean-up callback has not run yet is not joined.
        if task is None or task.done():
            task = asyncio.create_task(work())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        # Shielded: one caller giving up (timeout, client gone) must not cancel the others' work.
        return await asyncio.shield(task)

    def _landed(self, key: K, task: asyncio.Task[V]) -> None:
        """Forget a finished flight; mark its exception retrieved even if every caller left."""
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()
