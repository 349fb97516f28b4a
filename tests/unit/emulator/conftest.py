"""Fixtures: the demo realm served by a real emulator HTTP server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from keycloak_emulator import Emulator, EmulatorServer
from tests.unit.emulator.support import DEMO, Keycloak


@pytest.fixture
def emu() -> Emulator:
    """A fresh emulator holding the demo realm."""
    return Emulator.from_files([DEMO])


@pytest.fixture
async def kc(emu: Emulator) -> AsyncIterator[Keycloak]:
    """The demo emulator served over HTTP on a free loopback port."""
    server = EmulatorServer(emu, host="127.0.0.1", port=0)
    await server.start()
    async with aiohttp.ClientSession(base_url=server.base_url) as http:
        yield Keycloak(emu, server, http)
    await server.stop()
