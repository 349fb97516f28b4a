"""One fair-use admission shared by the concurrent upstream fetches of one request (docs/caching.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from proxy.coalesce import Admission


class SharedAdmission:
    """The request's one admission, taken when its first fetch that is not a coalesced follower
    needs it and held until every fetch of the request is done (concurrent fetches of one request
    never take two)."""

    def __init__(self, admission: Admission) -> None:
        """Share `admission` between the fetches of one request."""
        self._admission = admission
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()
        self._held = False

    async def __aenter__(self) -> SharedAdmission:
        """Nothing is taken yet."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Give the admission back, if it was taken."""
        await self._stack.aclose()

    @asynccontextmanager
    async def take(self) -> AsyncIterator[None]:
        """Hold the shared admission for a block (taking it the first time)."""
        async with self._lock:
            if not self._held:
                await self._stack.enter_async_context(self._admission())
                self._held = True
        yield
