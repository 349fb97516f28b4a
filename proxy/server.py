"""Running the proxy: listeners, optional TLS, workers sharing the port, graceful SIGTERM drain."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import signal
import ssl
import sys
from collections.abc import Mapping
from contextlib import suppress

import structlog
from aiohttp import web

from proxy import logs, metrics, tracing
from proxy.app import create_app, create_metrics_app, server_limits
from proxy.audit import setup as audit_setup
from proxy.config import Settings, split_host_port
from proxy.connections import GuardedSite
from proxy.filewatch import FileWatch

log = structlog.get_logger(__name__)


def _listener_ssl(settings: Settings) -> ssl.SSLContext | None:
    """TLS for the proxy's own listener, when a certificate is configured."""
    if not (settings.tls_cert and settings.tls_key):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    return ctx


async def _reload_listener_cert(settings: Settings, ctx: ssl.SSLContext) -> None:
    """Re-read the listener certificate when it changes (new handshakes use the new one)."""
    assert settings.tls_cert and settings.tls_key
    watch = FileWatch((settings.tls_cert, settings.tls_key), 0.0)  # the loop sleeps the interval
    while True:
        await asyncio.sleep(settings.cert_reload_interval)
        stamp = watch.changed()
        if stamp is None:
            continue
        try:
            ctx.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
        except (OSError, ssl.SSLError) as exc:
            log.error("listener_tls_reload_failed", error=str(exc))
            continue
        watch.accept(stamp)
        log.info("listener_tls_reloaded")


def listener_site(
    runner: web.BaseRunner,
    settings: Settings,
    host: str,
    port: int,
    tls: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> GuardedSite:
    """The proxy's listener: header timeout, connection cap, TLS handshake bounded by the former."""
    return GuardedSite(
        runner,
        host or None,
        port,
        ssl_context=tls,
        backlog=1024,
        reuse_port=reuse_port,
        header_timeout=settings.header_timeout,
        max_connections=settings.max_connections,
    )


async def serve_async(settings: Settings, stop: asyncio.Event, reuse_port: bool = False) -> None:
    """Serve until `stop` is set, then drain in-flight requests for up to the shutdown timeout."""
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout,
        handle_signals=False,
        **server_limits(settings),
    )
    await runner.setup()
    metrics_runner = web.AppRunner(create_metrics_app(app), access_log=None, handle_signals=False)
    await metrics_runner.setup()
    host, port = split_host_port(settings.listen)
    mhost, mport = split_host_port(settings.metrics_listen)
    tls = _listener_ssl(settings)
    site = listener_site(runner, settings, host, port, tls, reuse_port)
    msite = web.TCPSite(metrics_runner, mhost or None, mport, reuse_port=reuse_port or None)
    await site.start()
    await msite.start()
    reloader = asyncio.create_task(_reload_listener_cert(settings, tls)) if tls else None
    log.info(
        "listening",
        listen=settings.listen,
        metrics=settings.metrics_listen,
        tls=tls is not None,
        enforce_mode=settings.enforce_mode,
    )
    if not settings.auth_audiences and not settings.auth_allowed_azp:
        log.warning("no_audience_check", hint="set PROXY_AUTH_AUDIENCES or PROXY_AUTH_ALLOWED_AZP")
    await stop.wait()
    log.info("draining", timeout_s=settings.shutdown_timeout)
    if reloader:
        reloader.cancel()
    # Stops accepting first, then waits for in-flight handlers up to shutdown_timeout.
    await runner.cleanup()
    await metrics_runner.cleanup()
    log.info("stopped")


def _install_loop() -> None:
    """uvloop when installed: a measurably faster event loop."""
    with suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _run_one(
    settings: Settings, reuse_port: bool, worker: int = 0, environ: Mapping[str, str] | None = None
) -> None:
    """One worker process: serve until SIGTERM/SIGINT, then drain and exit."""
    logs.configure(settings.log_level, settings.log_format)
    logs.register_secrets([settings.auth_client_secret, settings.prometheus_token])
    tracing.setup(os.environ if environ is None else environ)
    metrics.WORKER.labels(str(worker)).set(1)
    _install_loop()

    async def main() -> None:
        if settings.workers > 1:
            structlog.contextvars.bind_contextvars(worker=worker)
            audit_setup.WORKER = worker  # each worker writes its own audit file
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_async(settings, stop, reuse_port)

    try:
        asyncio.run(main())
    finally:
        tracing.shutdown()


def run(settings: Settings, environ: Mapping[str, str] | None = None) -> int:
    """Run one process, or `workers` processes sharing the port with SO_REUSEPORT.

    The parent forwards SIGTERM/SIGINT to the workers and waits for their drain; if a worker dies
    on its own, the others are stopped too and the exit code is 1 (the pod restarts whole).
    """
    if settings.workers <= 1:
        _run_one(settings, reuse_port=False, environ=environ)
        return 0
    env = dict(os.environ if environ is None else environ)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_run_one, args=(settings, True, i, env), daemon=False, name=f"worker-{i}")
        for i in range(settings.workers)
    ]
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, _: object = None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.pid is not None and proc.exitcode is None:
                with suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    # Installed before the workers start: a SIGTERM during start-up is forwarded too.
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    failed = False
    for proc in procs:
        proc.start()
    running = list(procs)
    while running:
        multiprocessing.connection.wait([p.sentinel for p in running])
        for proc in [p for p in running if p.exitcode is not None]:
            running.remove(proc)
            if proc.exitcode != 0 or not stopping:
                failed = True
                if not stopping:
                    log.error("worker_exited", worker=proc.name, exitcode=proc.exitcode)
                    stop_all()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit("use `prom-keycloak-proxy serve`")
