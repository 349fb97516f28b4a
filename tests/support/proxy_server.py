"""The proxy under test as a real HTTP server on loopback, in a thread with its own event loop."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from aiohttp import web

from proxy.app import create_app, create_metrics_app, server_limits
from proxy.config import Settings, load_settings
from proxy.server import listener_site


def free_port() -> int:
    """A currently free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(environ: Mapping[str, str], **flags: Any) -> Settings:
    """Settings built exactly as `serve` builds them (env + flags), for tests."""
    return load_settings({k: v for k, v in flags.items() if v is not None}, dict(environ))


class ProxyServer:
    """Runs the proxy app and its metrics app on free loopback ports until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.metrics_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []
        self.app: web.Application | None = None

    def start(self) -> ProxyServer:
        """Start serving; returns once both ports accept connections."""
        self._thread.start()
        self._call(self._start()).result(timeout=30)
        return self

    async def _start(self) -> None:
        self.app = create_app(self.settings)
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.settings.shutdown_timeout,
            **server_limits(self.settings),
        )
        await runner.setup()
        self.site = listener_site(runner, self.settings, "127.0.0.1", self.port)
        await self.site.start()
        metrics_runner = web.AppRunner(
            create_metrics_app(self.app), access_log=None, handle_signals=False
        )
        await metrics_runner.setup()
        await web.TCPSite(metrics_runner, "127.0.0.1", self.metrics_port).start()
        self._runners = [runner, metrics_runner]

    def _call(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop (to reach its services) and return its result."""
        return self._call(coro).result(timeout=timeout)

    def stop(self) -> None:
        """Stop serving and end the thread."""

        async def _stop() -> None:
            for runner in self._runners:
                await runner.cleanup()

        if self._thread.is_alive():
            self._call(_stop()).result(timeout=60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
