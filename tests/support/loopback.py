"""An aiohttp application served on a free loopback port from a background thread (test stubs)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from typing import Self

from aiohttp import web

from tests.support.proxy_server import free_port


class LoopbackServer:
    """Subclasses add routes (and optionally TLS); `start()`/`stop()` run them on loopback."""

    scheme = "http"

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"{self.scheme}://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def add_routes(self, app: web.Application) -> None:
        """Register the stub's handlers."""
        raise NotImplementedError

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS for the listener; None for plain HTTP."""
        return None

    async def _start(self) -> None:
        app = web.Application()
        self.add_routes(app)
        # A short shutdown timeout: stubs may hold requests open on purpose (hang modes).
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context())
        await site.start()

    def start(self) -> Self:
        """Serve in the background thread; returns once the port accepts connections."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._runner is not None:
            done = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(TimeoutError):
                done.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
