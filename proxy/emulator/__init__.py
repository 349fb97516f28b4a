"""An aiohttp emulator of the Keycloak endpoints the proxy and `policies apply` use (SPEC §8)."""

from proxy.emulator.cli import main
from proxy.emulator.emulator import Emulator, EmulatorError
from proxy.emulator.server import EmulatorServer, ThreadedEmulatorServer

__all__ = ["Emulator", "EmulatorError", "EmulatorServer", "ThreadedEmulatorServer", "main"]
