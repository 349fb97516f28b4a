"""`main(argv)`: serve policies files as an emulated Keycloak until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from keycloak_emulator.emulator import Emulator
from keycloak_emulator.server import EmulatorServer
from keycloak_emulator.versions import CURRENT, parse
from proxy.policies.problems import PolicyFileError


def parser() -> argparse.ArgumentParser:
    """Command-line options of the emulator."""
    p = argparse.ArgumentParser(
        prog="prom-keycloak-proxy emulator", description="Serve policies files as an emulated Keycloak."
    )
    p.add_argument("files", nargs="*", type=Path, default=[Path("demo/proxy_demo/demo.yaml")])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--hostname", help="public base URL used in token issuers")
    p.add_argument("--admin-user", default="admin")
    p.add_argument("--admin-password", default="admin")
    p.add_argument(
        "--keycloak-version",
        type=parse,
        default=CURRENT,
        help=f"behave like this Keycloak release where answers changed (default {CURRENT})",
    )
    p.add_argument(
        "--allow-token-introspection-without-audience-check",
        action="store_true",
        help="Keycloak's server option: introspection does not require the caller in `aud`",
    )
    p.add_argument(
        "--evaluation-cost", type=float, default=0.0, help="seconds per resource a UMA call evaluates"
    )
    p.add_argument("--call-cost", type=float, default=0.0, help="seconds every HTTP call takes")
    return p


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C; exit 2 when a policies file has errors."""
    args = parser().parse_args(argv)
    try:
        emu = Emulator.from_files(
            args.files,
            admin_user=args.admin_user,
            admin_password=args.admin_password,
            hostname=args.hostname,
            keycloak_version=args.keycloak_version,
            introspection_audience_check=not args.allow_token_introspection_without_audience_check,
            evaluation_cost=args.evaluation_cost,
            call_cost=args.call_cost,
        )
    except PolicyFileError as exc:
        print(exc)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(emu, args.host, args.port))
    return 0


async def _serve(emu: Emulator, host: str, port: int) -> None:
    server = EmulatorServer(emu, host=host, port=port)
    await server.start()
    realms = ", ".join(r for r in emu.realms if r != "master")
    print(f"Keycloak emulator ({emu.version}) on {server.base_url} (realms: {realms})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
