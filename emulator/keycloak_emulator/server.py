"""Serving the emulator on loopback: in the running event loop, or in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from aiohttp import web

from keycloak_emulator.app import build_app
from keycloak_emulator.emulator import Emulator


class EmulatorServer:
    """A real HTTP server for one emulator; `base_url` is known after `start()`."""

    def __init__(self, emu: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emu
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running server."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; a port of 0 becomes the free port chosen, kept for later restarts."""
        self._runner = web.AppRunner(build_app(self.emulator), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = int(server.sockets[0].getsockname()[1])
        if self.emulator.server_url is None or self.emulator.server_url == self.base_url:
            self.emulator.server_url = self.base_url

    async def stop(self) -> None:
        """Stop listening (state is kept: a restart serves the same realms and keys)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @classmethod
    def start_in_thread(cls, emu: Emulator, host: str = "127.0.0.1", port: int = 0) -> ThreadedEmulatorServer:
        """Start a server in a background thread with its own event loop (for sync tests)."""
        handle = ThreadedEmulatorServer(cls(emu, host, port))
        handle.start()
        return handle


class ThreadedEmulatorServer:
    """A thread-backed `EmulatorServer`: `start`, `stop`, `restart` on the same port."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def emulator(self) -> Emulator:
        """The emulator being served."""
        return self.server.emulator

    @property
    def base_url(self) -> str:
        """`http://host:port`."""
        return self.server.base_url

    @property
    def port(self) -> int:
        """The listening port (stable across restarts)."""
        return self.server.port

    def start(self) -> None:
        """Start the loop thread (if needed) and listen."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="kc-emulator", daemon=True)
            self._thread.start()
            self._loop = loop
        self._run(self.server.start()).result(timeout=30)

    def stop(self) -> None:
        """Stop listening; the thread stays for a later `start()`."""
        if self._loop is not None:
            self._run(self.server.stop()).result(timeout=30)

    def restart(self) -> None:
        """Stop and listen again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop listening and end the loop thread."""
        if self._loop is None:
            return
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def _run(self, coro: object) -> Future[None]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
