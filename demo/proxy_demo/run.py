"""`prom-keycloak-proxy-demo`: real Prometheus (mTLS) + Keycloak emulator + the proxy, on loopback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from proxy import logs
from proxy.app import create_app, create_metrics_app, server_limits
from proxy.config import Settings, load_settings
from proxy.policies.problems import PolicyFileError
from proxy_demo.certs import Pki
from proxy_demo.commands import check as run_checks
from proxy_demo.commands import examples, hub_examples, render
from proxy_demo.dataset import SECOND_HUB_CLUSTERS, SECOND_HUB_SEED, build_dataset
from proxy_demo.policy import DEMO_POLICY, HUB_POLICIES, merged_realm
from proxy_demo.prometheus import (
    PrometheusServer,
    PrometheusStartError,
    PrometheusUnavailable,
    ensure_prometheus,
)

DEFAULT_POLICY = DEMO_POLICY
DEMO_TOKEN_LIFESPAN = 3600
# The emulator's master-realm login (Emulator's defaults): what `policies apply` would use.
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin"


class DemoError(Exception):
    """A problem the user can fix (a port in use, a bad policies file): printed as one line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prom-keycloak-proxy-demo", description=__doc__)
    parser.add_argument(
        "--policy",
        type=Path,
        default=None,
        help="policies file to load (one hub); default: the two demo hubs moc and innabox-dev",
    )
    parser.add_argument("--port", type=int, default=8080, help="proxy port on 127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=9091, help="metrics port on 127.0.0.1")
    parser.add_argument("--keycloak-port", type=int, default=8180, help="emulator port on 127.0.0.1")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep Prometheus data and certificates here"
    )
    parser.add_argument("--enforce-mode", choices=("narrow", "deny"), default="narrow")
    parser.add_argument(
        "--check", action="store_true", help="start everything, run the printed commands once, exit"
    )
    return parser


def _hub_entry(name: str, prom: PrometheusServer) -> dict[str, str]:
    """One `hubs:` entry: the hub's own upstream, CA and client certificate."""
    return {
        "name": name,
        "prometheus_base_url": prom.base_url,
        "prometheus_ca_cert": str(prom.ca),
        "prometheus_tls_cert": str(prom.client_cert),
        "prometheus_tls_key": str(prom.client_key),
    }


def demo_settings(
    policy: dict[str, Any],
    prom: PrometheusServer,
    kc_url: str,
    port: int,
    metrics_port: int,
    mode: str,
    second: tuple[str, PrometheusServer, Path] | None = None,
) -> Settings:
    """The proxy's configuration for the demo, built as `serve` would build it: env for one hub,
    a YAML `hubs:` list (written to `second`'s path) for two."""
    if second is None:
        upstream = {
            "PROXY_PROMETHEUS_BASE_URL": prom.base_url,
            "PROXY_PROMETHEUS_CA_CERT": str(prom.ca),
            "PROXY_PROMETHEUS_TLS_CERT": str(prom.client_cert),
            "PROXY_PROMETHEUS_TLS_KEY": str(prom.client_key),
            "PROXY_ACM_HUB": policy["hub"],
        }
    else:
        name, other, config = second
        hubs = {
            "default_hub": policy["hub"],
            "hubs": [_hub_entry(policy["hub"], prom), _hub_entry(name, other)],
        }
        config.write_text(yaml.safe_dump(hubs, sort_keys=False), encoding="utf-8")
        upstream = {"PROXY_CONFIG": str(config)}
    env = {
        "PROXY_LISTEN": f"127.0.0.1:{port}",
        "PROXY_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        **upstream,
        "PROXY_AUTH_BASE_URL": kc_url,
        "PROXY_AUTH_REALM": policy["realm"],
        "PROXY_AUTH_CLIENT_ID": policy["resource_server"]["client_id"],
        "PROXY_AUTH_CLIENT_SECRET": policy["resource_server"]["secret"],
        "PROXY_ENFORCE_MODE": mode,
        "PROXY_SHUTDOWN_TIMEOUT": "2s",
    }
    return load_settings({}, env)


def check_ports_free(ports: dict[str, int], host: str = "127.0.0.1") -> None:
    """Raise DemoError naming the first port already taken, before anything starts."""
    for flag, port in ports.items():
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
                raise DemoError(f"port {port} on {host} {reason}: pick another with {flag} PORT") from None


def load_policy(path: Path) -> dict[str, Any]:
    """The policies file as a mapping, or DemoError with the reason."""
    try:
        policy = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DemoError(f"cannot read the policies file {path}: {exc}") from None
    if not isinstance(policy, dict):
        raise DemoError(f"{path} is not a policies file (a YAML mapping)")
    return policy


@dataclass
class Backends:
    """The demo's Prometheus servers (mTLS, one per hub) and Keycloak emulator, all on loopback."""

    policy: dict[str, Any]
    prometheus: PrometheusServer
    emulator: Any
    keycloak_url: str
    # The second hub (name, its Prometheus, where the proxy's hubs config goes), when two run.
    second: tuple[str, PrometheusServer, Path] | None = None


@contextlib.asynccontextmanager
async def backends(
    policy_file: Path | None, keycloak_port: int, workdir: Path | None
) -> AsyncIterator[Backends]:
    """Start Prometheus (two hubs, own CA and data each, unless one policies file is given) and
    the emulator; stop them and remove a temporary workdir on exit."""
    from keycloak_emulator import Emulator, EmulatorServer  # never imported by the request path

    policy = load_policy(policy_file or DEFAULT_POLICY)
    ensure_prometheus()
    own = workdir is None
    work = workdir or Path(tempfile.mkdtemp(prefix="prom-keycloak-proxy-demo-"))
    prom = PrometheusServer(work / "prometheus", Pki(work / "pki"), build_dataset())
    second: tuple[str, PrometheusServer, Path] | None = None
    if policy_file is None:
        other = load_policy(HUB_POLICIES[1])
        data = build_dataset(seed=SECOND_HUB_SEED, clusters=SECOND_HUB_CLUSTERS)
        hub_dir = work / f"hub-{other['hub']}"
        second = (
            other["hub"],
            PrometheusServer(hub_dir / "prometheus", Pki(hub_dir / "pki"), data),
            work / "hubs.yaml",
        )
    kc: Any = None
    try:
        await asyncio.to_thread(prom.start)
        if second is not None:
            await asyncio.to_thread(second[1].start)
        try:
            if second is None:
                emu = Emulator.from_files(
                    [policy_file or DEFAULT_POLICY], admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD
                )
            else:
                emu = Emulator(admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD)
                emu.import_realm(merged_realm(HUB_POLICIES))
        except PolicyFileError as exc:
            raise DemoError(" ".join(str(exc).split())) from None
        emu.realm(policy["realm"]).token_lifespan = DEMO_TOKEN_LIFESPAN  # long enough to paste and play
        kc = EmulatorServer(emu, host="127.0.0.1", port=keycloak_port)
        await kc.start()
        yield Backends(policy, prom, emu, kc.base_url, second)
    finally:
        if kc is not None:
            await kc.stop()
        await asyncio.to_thread(prom.stop)
        if second is not None:
            await asyncio.to_thread(second[1].stop)
        if own:  # private keys live here: never leave them behind
            shutil.rmtree(work, ignore_errors=True)


async def _serve_proxy(settings: Settings, port: int, metrics_port: int) -> list[web.AppRunner]:
    """Start the proxy and its metrics listener in this process, on loopback."""
    app = create_app(settings)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=2, **server_limits(settings)
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    metrics_runner = web.AppRunner(create_metrics_app(app), access_log=None, handle_signals=False)
    await metrics_runner.setup()
    await web.TCPSite(metrics_runner, "127.0.0.1", metrics_port).start()
    return [runner, metrics_runner]


def banner(b: Backends, base: str, metrics_port: int) -> str:
    """What the demo prints once everything answers: where each part listens, the admin login."""
    hubs = ""
    if b.second is not None:
        first, (name, prom, _) = b.policy["hub"], b.second
        hubs = (
            f"Two hubs: {first} (the default: /api/v1/… and /{first}/api/v1/…) and {name}"
            f" (/{name}/api/v1/…; Prometheus {prom.base_url}, its own CA and data).\n"
        )
    return (
        f"\nprom-keycloak-proxy demo is up: proxy {base}, metrics http://127.0.0.1:{metrics_port}/metrics,\n"
        f"Keycloak emulator {b.keycloak_url} (realm {b.policy['realm']}; admin console login"
        f" {ADMIN_USER} / {ADMIN_PASSWORD} in the master realm), Prometheus {b.prometheus.base_url} (mTLS).\n"
        f"{hubs}"
        f"\nMint a token (valid {DEMO_TOKEN_LIFESPAN // 60} minutes), then query with it; paste any block:\n"
    )


async def _run(args: argparse.Namespace) -> int:
    check_ports_free(
        {"--port": args.port, "--metrics-port": args.metrics_port, "--keycloak-port": args.keycloak_port}
    )
    async with backends(args.policy, args.keycloak_port, args.workdir) as b:
        settings = demo_settings(
            b.policy, b.prometheus, b.keycloak_url, args.port, args.metrics_port, args.enforce_mode, b.second
        )
        runners = await _serve_proxy(settings, args.port, args.metrics_port)
        base = f"http://127.0.0.1:{args.port}"
        found = examples(b.policy, b.keycloak_url, base)
        if b.second is not None:
            # Same realm: the second hub's users and clients, asking that hub's own path.
            found += hub_examples(load_policy(HUB_POLICIES[1]), b.keycloak_url, base, b.second[0], b.policy)
        print(banner(b, base, args.metrics_port))
        print(render(found))
        print(
            "\nTry other queries, e.g. the unscoped 'DCGM_FI_DEV_GPU_UTIL' (narrowed to each caller's"
            " projects), /api/v1/series, /api/v1/rules, /proxy/v1/whoami."
        )
        try:
            if args.check:
                print("\nRunning every block once:\n", flush=True)
                return await run_checks(found)
            print("\nCtrl-C stops everything.", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            return 0
        finally:
            for runner in runners:
                await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo until Ctrl-C (or once, with `--check`); one-line errors, exit 2 for usage problems."""
    args = _parser().parse_args(None if argv is None else list(argv))
    logs.configure("warning", "console")
    try:
        return asyncio.run(_run(args))
    except DemoError as exc:
        print(f"prom-keycloak-proxy-demo: {exc}", file=sys.stderr)
        return 2
    except (PrometheusUnavailable, PrometheusStartError) as exc:
        print(
            f"prom-keycloak-proxy-demo: Prometheus did not start: {str(exc).splitlines()[0]}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        return 130
