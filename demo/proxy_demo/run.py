"""`prom-keycloak-proxy demo`: real Prometheus (mTLS) + Keycloak emulator + the proxy, on loopback."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from aiohttp import web

from proxy import logs
from proxy.app import create_app, create_metrics_app, server_limits
from proxy.config import Settings, load_settings
from proxy_demo.certs import Pki
from proxy_demo.dataset import build_dataset
from proxy_demo.policy import DEMO_POLICY
from proxy_demo.prometheus import PrometheusServer, ensure_prometheus

DEFAULT_POLICY = DEMO_POLICY
DEMO_TOKEN_LIFESPAN = 3600
EXAMPLE_QUERY = 'sum by (namespace, exported_namespace) (DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod"})'


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prom-keycloak-proxy demo", description=__doc__)
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policies file to load")
    parser.add_argument("--port", type=int, default=8080, help="proxy port on 127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=9091, help="metrics port on 127.0.0.1")
    parser.add_argument("--keycloak-port", type=int, default=8180, help="emulator port on 127.0.0.1")
    parser.add_argument("--workdir", type=Path, default=None, help="where Prometheus keeps its data")
    parser.add_argument("--enforce-mode", choices=("narrow", "deny"), default="narrow")
    parser.add_argument(
        "--check", action="store_true", help="start everything, run the printed requests once, exit"
    )
    return parser


def demo_settings(
    policy: dict[str, Any], prom: PrometheusServer, kc_url: str, port: int, metrics_port: int, mode: str
) -> Settings:
    """The proxy's configuration for the demo, built as `serve` would build it from env."""
    env = {
        "PROXY_LISTEN": f"127.0.0.1:{port}",
        "PROXY_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "PROXY_PROMETHEUS_BASE_URL": prom.base_url,
        "PROXY_PROMETHEUS_CA_CERT": str(prom.ca),
        "PROXY_PROMETHEUS_TLS_CERT": str(prom.client_cert),
        "PROXY_PROMETHEUS_TLS_KEY": str(prom.client_key),
        "PROXY_AUTH_BASE_URL": kc_url,
        "PROXY_AUTH_REALM": policy["realm"],
        "PROXY_AUTH_CLIENT_ID": policy["resource_server"]["client_id"],
        "PROXY_AUTH_CLIENT_SECRET": policy["resource_server"]["secret"],
        "PROXY_ACM_HUB": policy["hub"],
        "PROXY_ENFORCE_MODE": mode,
        "PROXY_SHUTDOWN_TIMEOUT": "2s",
    }
    return load_settings({}, env)


def curl_lines(policy: dict[str, Any], emu: Any, base: str) -> list[str]:
    """Ready-to-paste curl commands: a bearer token per demo user, and the Basic-auth form."""
    realm = policy["realm"]
    url = f"{base}/api/v1/query?query={quote(EXAMPLE_QUERY)}"
    lines = []
    for user in policy.get("users", []):
        token = emu.password_token(realm, user["username"], user["password"])["access_token"]
        lines.append(f"# {user['username']}")
        lines.append(f"curl -s -H 'Authorization: Bearer {token}' {shlex.quote(url)}")
    for client in policy.get("clients", []):
        if client.get("secret") and client.get("service_account"):
            lines.append(f"# {client['client_id']} (Basic client credentials; the proxy mints the token)")
            lines.append(f"curl -s -u {client['client_id']}:{client['secret']} {shlex.quote(url)}")
    return lines


async def _run(args: argparse.Namespace) -> int:
    from keycloak_emulator import Emulator, EmulatorServer  # never imported by the request path

    policy = yaml.safe_load(args.policy.read_text(encoding="utf-8"))
    ensure_prometheus()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="prom-keycloak-proxy-demo-"))
    prom = PrometheusServer(workdir / "prometheus", Pki(workdir / "pki"), build_dataset())
    await asyncio.to_thread(prom.start)
    emu = Emulator.from_files([args.policy])
    emu.realm(policy["realm"]).token_lifespan = DEMO_TOKEN_LIFESPAN  # long enough to paste and play
    kc = EmulatorServer(emu, host="127.0.0.1", port=args.keycloak_port)
    await kc.start()
    settings = demo_settings(policy, prom, kc.base_url, args.port, args.metrics_port, args.enforce_mode)
    app = create_app(settings)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=2, **server_limits(settings)
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    metrics_runner = web.AppRunner(create_metrics_app(app), access_log=None, handle_signals=False)
    await metrics_runner.setup()
    await web.TCPSite(metrics_runner, "127.0.0.1", args.metrics_port).start()
    base = f"http://127.0.0.1:{args.port}"
    lines = curl_lines(policy, emu, base)
    print(
        f"\nprom-keycloak-proxy demo is up: proxy {base}, metrics http://127.0.0.1:{args.metrics_port}/metrics,"
        f" Keycloak emulator {kc.base_url} (realm {policy['realm']}), Prometheus {prom.base_url} (mTLS)\n"
    )
    print("\n".join(lines))
    print(
        f"\nTokens are valid for {DEMO_TOKEN_LIFESPAN // 60} minutes. Try other queries, e.g. the unscoped "
        "'DCGM_FI_DEV_GPU_UTIL' (narrowed to each caller's projects), /api/v1/series, /api/v1/rules."
    )
    code = 0
    try:
        if args.check:
            code = await _check(lines)
        else:
            print("\nCtrl-C stops everything.", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        await runner.cleanup()
        await metrics_runner.cleanup()
        await kc.stop()
        await asyncio.to_thread(prom.stop)
    return code


async def _check(lines: Sequence[str]) -> int:
    """Run every printed curl command once; non-zero if any of them fails to get an answer."""
    failures = 0
    for line in lines:
        if line.startswith("#"):
            print(line)
            continue
        proc = await asyncio.create_subprocess_shell(
            line + " -w ' HTTP %{http_code}\\n'", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace").strip()
        print(text[-300:])
        failures += proc.returncode != 0 or " HTTP 000" in text
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo until Ctrl-C (or once, with `--check`)."""
    args = _parser().parse_args(None if argv is None else list(argv))
    logs.configure("warning", "console")
    return asyncio.run(_run(args))
