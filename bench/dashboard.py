"""The dashboard replay of `make bench` (`make bench BENCH=dashboard` runs it alone).

20 users of the same project open a 20-panel GPU dashboard (6 h range, 30 s step) at the same
time, then refresh it three times, each refresh moving the window by 30 s (Grafana's refresh,
without the 30 s wait; the last window ends at the current step). Run directly against Prometheus
and through the proxy with the results cache in process, in memcached (Debian `memcached` on
loopback, the tests' server), off (coalescing only) and off without coalescing (the proxy before
both); printed side by side: requests Prometheus served (its own
`prometheus_http_requests_total`, nothing else queries it), end-to-end p50/p99 per load, the
ratios to direct, Prometheus' and the proxy's CPU seconds, the proxy's cache outcomes (its metrics
port) and whether every panel's answer has direct's shape. The Keycloak emulator runs in its own
process with the demo realm plus 20 viewers holding the project.

One Prometheus (mTLS, client certificate) serves both sides, over a generated GPU project of a
thousand series × 8 h (`bench/dashboard_data.py`), so its evaluation is a real cost. Each
proxy configuration starts empty: the first load is the warm-up. The proxy keeps its default
fair-use limits (64 upstream requests in flight, 8 per user). Not a timed test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pstats
import secrets
import signal
import ssl
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.dashboard_data import STEP, Written, backfill
from bench.dashboard_load import PANELS, PER_USER, RANGE, Load, Replayer
from bench.dashboard_stack import (
    Upstream,
    cpu_seconds,
    emulator,
    memcached,
    mint,
    outcomes,
    policy_file,
    viewer,
)
from proxy_demo.certs import Pki
from proxy_demo.prometheus import PrometheusServer, ensure_prometheus

USERS = 20
REFRESHES = 3
# the proxy's default fair-use limits, written out: run.py's proxy_env raises them for wrk
DEFAULT_LIMITS = {"PROXY_MAX_UPSTREAM_CONCURRENCY": "64", "PROXY_MAX_CONCURRENT_PER_SUBJECT": "8"}


@dataclass(frozen=True)
class Served:
    """A running proxy: its URL, its metrics URL and its process id."""

    url: str
    metrics_url: str
    pid: int


Serve = Callable[..., AbstractContextManager[Served]]  # (prom, kc_url, logfile, profile, **env)


@dataclass
class Run:
    """One target's loads, with Prometheus' (and the proxy's) CPU seconds and cache outcomes."""

    name: str
    loads: list[Load] = field(default_factory=list)
    prom_cpu: list[float] = field(default_factory=list)
    proxy_cpu: list[float] = field(default_factory=list)
    outcomes: list[Counter[str]] = field(default_factory=list)


async def replay(
    name: str,
    base_url: str,
    tokens: list[str | None],
    ctx: ssl.SSLContext | None,
    prom: PrometheusServer,
    proxy: Served | None = None,
    profile: bool = False,
    stagger: float = 0.0,
) -> Run:
    """The load and `REFRESHES` refreshes, the last window ending at the current step.

    `profile`: SIGUSR1 to the proxy after the first load (bench/cprofile_proxy.py starts profiling).
    """
    prom_proc = psutil.Process(prom.pid)
    proxy_proc = psutil.Process(proxy.pid) if proxy else None
    first_end = (int(time.time()) // STEP - REFRESHES) * STEP
    run = Run(name)
    count = Upstream(prom)
    async with Replayer(base_url, tokens, ctx, stagger) as replayer:
        for i in range(REFRESHES + 1):
            cpu = cpu_seconds(prom_proc), cpu_seconds(proxy_proc)
            seen = await outcomes(proxy.metrics_url) if proxy else Counter[str]()
            label = "load" if i == 0 else f"refresh {i}"
            run.loads.append(await replayer.load(label, first_end + i * STEP, count))
            run.prom_cpu.append(cpu_seconds(prom_proc) - cpu[0])
            if proxy:
                run.proxy_cpu.append(cpu_seconds(proxy_proc) - cpu[1])
                run.outcomes.append(await outcomes(proxy.metrics_url) - seen)
                if profile and i == 0:
                    os.kill(proxy.pid, signal.SIGUSR1)
    return run


def run(
    workdir: Path, log: Callable[[str], None], serve: Serve, profile: bool = False, stagger: float = 0.0
) -> str:
    """Generate the data, start Prometheus, the emulator and memcached, replay every target.

    `profile`: the cache=memory proxy runs under cProfile for the refreshes; its top functions follow.
    `stagger`: users start spread over that many seconds instead of together (`Replayer.load`).
    """
    binaries = ensure_prometheus()
    workdir = workdir / "dashboard"
    prom_dir = workdir / "prometheus"
    prom_dir.mkdir(parents=True)
    log("dashboard: generating the GPU project's history and backfilling it")
    began = time.monotonic()
    written = backfill(binaries.promtool, prom_dir / "data", time.time(), workdir)
    (prom_dir / ".backfilled").touch()  # PrometheusServer: the TSDB already holds the data
    log(f"dashboard: {written.series} series, {written.samples} samples in {time.monotonic() - began:.0f} s")
    prom = PrometheusServer(prom_dir, Pki(workdir / "pki"), [], rules=None)
    runs: list[Run] = []
    stats = workdir / "proxy-memory.prof" if profile else None
    with contextlib.ExitStack() as stack:
        prom.start()
        stack.callback(prom.stop)
        kc_url = stack.enter_context(emulator(policy_file(workdir, USERS), workdir))
        tokens: list[str | None] = [mint(kc_url, viewer(i)) for i in range(USERS)]
        direct_ctx = prom.ssl_context()
        log("dashboard: priming Prometheus (one user's dashboard, not measured)")
        asyncio.run(_prime(Replayer(prom.base_url, [None], direct_ctx), prom))
        log("dashboard: direct")
        runs.append(
            asyncio.run(replay("direct", prom.base_url, [None] * USERS, direct_ctx, prom, stagger=stagger))
        )
        hmac_key = secrets.token_hex(32)
        configs: list[tuple[str, dict[str, str]]] = [
            ("proxy cache=memory", {"PROXY_CACHE": "memory"}),
            ("proxy cache=memcached", {"PROXY_CACHE": "memcached", "PROXY_CACHE_HMAC_KEY": hmac_key}),
            ("proxy cache=off", {"PROXY_CACHE": "off"}),
            # the proxy before results caching and coalescing
            ("proxy cache=off coalesce=off", {"PROXY_CACHE": "off", "PROXY_COALESCE": "false"}),
        ]
        for name, env in configs:
            log(f"dashboard: {name}")
            with contextlib.ExitStack() as inner:
                if env["PROXY_CACHE"] == "memcached":
                    env = {**env, "PROXY_CACHE_ADDRESS": inner.enter_context(memcached())}
                logfile = workdir / f"{name.replace(' ', '-').replace('=', '-')}.log"
                profiled = stats if env["PROXY_CACHE"] == "memory" else None
                served = inner.enter_context(serve(prom, kc_url, logfile, profiled, **DEFAULT_LIMITS, **env))
                runs.append(
                    asyncio.run(
                        replay(name, served.url, tokens, None, prom, served, profiled is not None, stagger)
                    )
                )
    text = render(runs, written, stagger)
    if stats is not None:
        text += "\n\n" + profile_summary(stats, USERS * len(PANELS) * REFRESHES)
    return text


def profile_summary(path: Path, requests: int) -> str:
    """The profiled proxy's top functions by own CPU time and by cumulative time (proxy/ only)."""
    raw: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1e-9

    def name(key: tuple[str, int, str]) -> str:
        where = key[0].split("/proxy/", 1)[-1] if "/proxy/" in key[0] else Path(key[0]).name
        return f"{where}:{key[2]}" if key[0] != "~" else key[2]

    lines = [
        f"cProfile (CPU clock, inflated for Python-heavy code) of the cache=memory proxy over the"
        f" {REFRESHES} refreshes ({requests} requests): {1e3 * total / requests:.1f} ms CPU per request",
        "  own time:",
    ]
    for key, v in sorted(raw.items(), key=lambda kv: -kv[1][2])[:12]:
        lines.append(f"    {100 * v[2] / total:5.1f} %  {1e3 * v[2] / requests:6.2f} ms/req  {name(key)}")
    lines.append("  cumulative, proxy/ functions:")
    ours = [(k, v) for k, v in raw.items() if "/proxy/" in k[0] and "/site-packages/" not in k[0]]
    for key, v in sorted(ours, key=lambda kv: -kv[1][3])[:14]:
        lines.append(f"    {100 * v[3] / total:5.1f} %  {1e3 * v[3] / requests:6.2f} ms/req  {name(key)}")
    return "\n".join(lines)


async def _prime(replayer: Replayer, prom: PrometheusServer) -> None:
    """One unmeasured dashboard load straight at Prometheus."""
    async with replayer:
        await replayer.load("prime", (int(time.time()) // STEP - REFRESHES) * STEP, Upstream(prom))


def render(runs: list[Run], written: Written, stagger: float = 0.0) -> str:
    """The side-by-side table, the answers' check and the issue's targets."""
    direct = runs[0]
    lines = [
        f"dashboard replay: {USERS} users × {len(PANELS)} panels of one project, {RANGE // 3600} h range at"
        f" step {STEP} s ({RANGE // STEP + 1} points), ≤ {PER_USER} panels in flight per user,"
        + (f" users starting over {stagger:g} s;" if stagger else " all users at once;")
        + f" a load, then {REFRESHES} refreshes (window +{STEP} s each)",
        f"data: {written.series} series, {written.samples / 1e6:.2f} M samples (30 s grid,"
        f" {(written.last - written.first) / 3600:.1f} h); upstream = queries Prometheus served;"
        " ×dir = ratio to direct at the same load; CPU = CPU seconds of Prometheus / the proxy;"
        " outcomes = the proxy's results-cache outcomes, coalesced requests and cache errors",
        "",
        f"{'target':26} {'load':9} {'upstream':>8} {'×dir':>6} {'p50 ms':>8} {'×dir':>6} {'p99 ms':>8}"
        f" {'×dir':>6} {'wall s':>7} {'prom CPU':>8} {'prx CPU':>7} {'err':>4}  outcomes",
    ]
    lines.append("-" * len(lines[-1]))
    for run in runs:
        for i, load in enumerate(run.loads):
            d = direct.loads[i]
            lines.append(
                f"{run.name if i == 0 else '':26} {load.label:9} {load.upstream:8d}"
                f" {_ratio(load.upstream, d.upstream)} {load.p50:8.1f} {_ratio(load.p50, d.p50)}"
                f" {load.p(0.99):8.1f} {_ratio(load.p(0.99), d.p(0.99))} {load.wall:7.2f}"
                f" {run.prom_cpu[i]:8.2f} {_at(run.proxy_cpu, i)} {len(load.failures):4d}"
                f"  {_outcomes(run, i)}"
            )
    lines += ["", f"after warm-up (refreshes 1–{REFRESHES} together):"]
    warm_direct = _warm(direct)
    for run in runs:
        warm = _warm(run)
        cpu = sum(run.prom_cpu[1:])
        lines.append(
            f"  {run.name:26} upstream {warm.upstream:5d} ({_pct(warm.upstream, warm_direct.upstream)} of"
            f" direct's)  p50 {warm.p50:7.1f} ms ({_ratio(warm.p50, warm_direct.p50).strip()}×)"
            f"  p99 {warm.p(0.99):7.1f} ms ({_ratio(warm.p(0.99), warm_direct.p(0.99)).strip()}×)"
            f"  prom CPU {cpu:5.1f} s ({_pct(cpu, sum(direct.prom_cpu[1:]))})"
        )
    lines += ["", "answers (first user, every load): series and points per panel as direct's:"]
    for run in runs[1:]:
        lines.append(f"  {run.name:26} {_compare(run, direct)}")
    failures = [f"{run.name} {load.label}: {f}" for run in runs for load in run.loads for f in load.failures]
    if failures:
        lines += ["failures (first 10):", *(f"  {f}" for f in failures[:10])]
    lines += ["", "targets of issue #20 (same run):"]
    for run in runs[1:]:
        if "off" in run.name:
            continue
        warm = _warm(run)
        ok = warm.upstream <= 0.10 * warm_direct.upstream
        lines.append(
            f"  [{'PASS' if ok else 'FAIL'}] {run.name}: upstream after warm-up ≤ 10 % of direct's:"
            f" {warm.upstream} vs {warm_direct.upstream} ({_pct(warm.upstream, warm_direct.upstream)})"
        )
        ok = warm.p50 < warm_direct.p50
        lines.append(
            f"  [{'PASS' if ok else 'FAIL'}] {run.name}: p50 after warm-up below direct's:"
            f" {warm.p50:.1f} ms vs {warm_direct.p50:.1f} ms"
        )
    return "\n".join(lines)


def _warm(run: Run) -> Load:
    """The refreshes of a run as one load."""
    out = Load("refreshes")
    for load in run.loads[1:]:
        out.seconds += load.seconds
        out.upstream += load.upstream
        out.failures += load.failures
    return out


def _compare(run: Run, direct: Run) -> str:
    """`same` or the panels whose (series, points) differ from direct's at the same load."""
    differ = [
        f"{load.label} panel {p + 1}: {load.shapes.get(p)} vs {d.shapes.get(p)}"
        for load, d in zip(run.loads, direct.loads, strict=True)
        for p in range(len(PANELS))
        if load.shapes.get(p) != d.shapes.get(p)
    ]
    empty = [p + 1 for p, (series, _) in direct.loads[0].shapes.items() if series <= 0]
    note = f" (direct's empty or failed panels: {empty})" if empty else ""
    return ("same" if not differ else f"{len(differ)} differ: " + "; ".join(differ[:4])) + note


def _at(values: list[float], i: int) -> str:
    return f"{values[i]:7.2f}" if i < len(values) else "      -"


def _outcomes(run: Run, i: int) -> str:
    if i >= len(run.outcomes):
        return ""
    return " ".join(f"{k} {v}" for k, v in sorted(run.outcomes[i].items()) if v) or "-"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:6.2f}" if b else "     -"


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f} %" if b else "-"
