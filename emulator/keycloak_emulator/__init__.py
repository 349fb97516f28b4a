"""An aiohttp emulator of the Keycloak endpoints the proxy and `policies apply` use (docs/keycloak.md)."""

from keycloak_emulator.cli import main
from keycloak_emulator.emulator import Emulator, EmulatorError
from keycloak_emulator.server import EmulatorServer, ThreadedEmulatorServer

__all__ = ["Emulator", "EmulatorError", "EmulatorServer", "ThreadedEmulatorServer", "main"]
