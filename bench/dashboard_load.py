"""The dashboard replay's load: 20 panels as Grafana's backend sends them, for many users at once.

Each request is what Grafana's Prometheus datasource sends for a range panel (QueryData): a POST
form with the keys sorted (`end`, `query`, `start`, `step`), `start`/`end` floored onto the step,
`Content-Type: application/x-www-form-urlencoded`, `Accept-Encoding: gzip` (Go's transport), the
dashboard/panel/query-group headers, and the user's bearer token (`oauthPassThru`). Each user has
its own keep-alive connections and at most `PER_USER` panels in flight (a browser's six
connections per host); every user loads the same dashboard at the same time.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp

from bench.dashboard_data import CLUSTER, PROJECT

RANGE = 6 * 3600
STEP = 30
PER_USER = 6
DCGM = f'cluster="{CLUSTER}", exported_namespace="{PROJECT}"'
WORK = f'cluster="{CLUSTER}", namespace="{PROJECT}"'
# Grafana renders $__rate_interval as a Go duration (2m0s at a 30 s interval and scrape).
PANELS: tuple[str, ...] = (
    f"avg(DCGM_FI_DEV_GPU_UTIL{{{DCGM}}})",
    f"sum by (exported_pod) (DCGM_FI_DEV_GPU_UTIL{{{DCGM}}})",
    f"sum by (Hostname) (DCGM_FI_DEV_FB_USED{{{DCGM}}}) / 1024",
    f"sum(DCGM_FI_DEV_POWER_USAGE{{{DCGM}}})",
    f"avg by (modelName) (avg_over_time(DCGM_FI_DEV_GPU_UTIL{{{DCGM}}}[1h]))",
    f"max by (Hostname) (max_over_time(DCGM_FI_DEV_GPU_TEMP{{{DCGM}}}[5m]))",
    f"quantile(0.9, DCGM_FI_DEV_GPU_UTIL{{{DCGM}}})",
    f"count(DCGM_FI_DEV_GPU_UTIL{{{DCGM}}} > 50)",
    f"sum by (exported_pod) (DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{DCGM}}})",
    f"sum(increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{DCGM}}}[1h])) / 3.6e9",
    f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{WORK}, container!=""}}[2m0s]))',
    f'sum by (pod) (container_memory_working_set_bytes{{{WORK}, container!=""}})',
    f'sum(kube_pod_container_resource_requests{{{WORK}, resource="nvidia_com_gpu"}})',
    f"sum(rate(container_network_receive_bytes_total{{{WORK}}}[2m0s])) by (pod)",
    f"histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{{{WORK}}}[5m])))",
    "histogram_quantile(0.5, sum by (le, model_name)"
    f" (rate(vllm:time_to_first_token_seconds_bucket{{{WORK}}}[2m0s])))",
    f"sum by (model_name) (rate(vllm:request_success_total{{{WORK}}}[5m]))",
    f"sum by (pod) (vllm:num_requests_running{{{WORK}}})",
    f"sum(rate(vllm:generation_tokens_total{{{WORK}}}[2m0s]))"
    f" / sum(rate(vllm:prompt_tokens_total{{{WORK}}}[2m0s]))",
    f"sum(rate(vllm:e2e_request_latency_seconds_sum{{{WORK}}}[5m]))"
    f" / sum(rate(vllm:e2e_request_latency_seconds_count{{{WORK}}}[5m]))",
)


@dataclass
class Load:
    """One load of the dashboard by every user: per-request seconds, failures, upstream requests."""

    label: str
    seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    upstream: int = 0
    wall: float = 0.0
    shapes: dict[int, tuple[int, int]] = field(default_factory=dict)  # panel -> (series, points)
    bodies: dict[int, tuple[bytes, str | None]] = field(default_factory=dict, repr=False)

    def p(self, q: float) -> float:
        """The `q` quantile of the request latencies, in ms."""
        if not self.seconds:
            return float("nan")
        ordered = sorted(self.seconds)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        """Median latency in ms."""
        return 1000 * statistics.median(self.seconds) if self.seconds else float("nan")


def form(panel: int, end: int) -> bytes:
    """The POST body Grafana sends for `panel` over the 6 h window ending at `end` (aligned)."""
    fields = [("end", str(end)), ("query", PANELS[panel]), ("start", str(end - RANGE)), ("step", str(STEP))]
    return urlencode(fields).encode()


def headers(panel: int, token: str | None, group: str) -> dict[str, str]:
    """Grafana's QueryData headers for one panel of one refresh."""
    out = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept-Encoding": "gzip",
        "User-Agent": "Grafana/11.3.0",
        "X-Grafana-Org-Id": "1",
        "X-Dashboard-Uid": "gpu-project",
        "X-Panel-Id": str(panel + 1),
        "X-Panel-Plugin-Id": "timeseries",
        "X-Query-Group-Id": group,
        "X-Datasource-Uid": "prometheus",
    }
    if token is not None:
        out["Authorization"] = f"Bearer {token}"
    return out


def shape_of(body: bytes, encoding: str | None) -> tuple[int, int]:
    """(series, points) of a matrix answer; (-1, -1) when it is not a successful matrix."""
    raw = gzip.decompress(body) if encoding == "gzip" else body
    try:
        doc = json.loads(raw)
        result = doc["data"]["result"]
        return len(result), sum(len(s.get("values", ())) for s in result)
    except (ValueError, KeyError, TypeError):
        return -1, -1


class Replayer:
    """Users with their own sessions loading the dashboard against one base URL."""

    def __init__(
        self, base_url: str, tokens: Sequence[str | None], ctx: ssl.SSLContext | None, stagger: float = 0.0
    ) -> None:
        """`tokens`: one per user (None: no Authorization); `ctx`: client TLS; `stagger`: see `load`."""
        self.stagger = stagger
        self.base_url = base_url
        self.tokens = list(tokens)
        self.ctx = ctx
        self.sessions: list[aiohttp.ClientSession] = []

    async def __aenter__(self) -> Replayer:
        """Open one keep-alive session per user (`PER_USER` connections each)."""
        for _ in self.tokens:
            connector = aiohttp.TCPConnector(limit=PER_USER, ssl=self.ctx if self.ctx else False)
            self.sessions.append(
                aiohttp.ClientSession(
                    connector=connector,
                    auto_decompress=False,
                    timeout=aiohttp.ClientTimeout(total=120),
                )
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the sessions."""
        for session in self.sessions:
            await session.close()

    async def load(self, label: str, end: int, upstream: Callable[[], Awaitable[int]]) -> Load:
        """Every user loads every panel of the window ending at `end`; `upstream()` counts requests.

        Users start together, or with `stagger` seconds spread evenly between the first and the last.
        """
        out = Load(label)
        before = await upstream()
        began = time.perf_counter()
        await asyncio.gather(*(self._user(u, end, out) for u in range(len(self.tokens))))
        out.wall = time.perf_counter() - began
        out.upstream = await upstream() - before
        # the first user's answers are decoded after the load, so decoding delays no request
        out.shapes = {i: shape_of(*answer) for i, answer in sorted(out.bodies.items())}
        out.bodies.clear()
        return out

    async def _user(self, user: int, end: int, out: Load) -> None:
        """One user's dashboard: all panels, `PER_USER` at a time (the browser's limit)."""
        if self.stagger and len(self.tokens) > 1:
            await asyncio.sleep(self.stagger * user / (len(self.tokens) - 1))
        slots = asyncio.Semaphore(PER_USER)
        group = str(uuid.uuid4())

        async def panel(i: int) -> None:
            async with slots:
                await self._panel(user, i, end, group, out)

        await asyncio.gather(*(panel(i) for i in range(len(PANELS))))

    async def _panel(self, user: int, i: int, end: int, group: str, out: Load) -> None:
        """One panel request, timed from sending to the last byte."""
        url = f"{self.base_url}/api/v1/query_range"
        started = time.perf_counter()
        try:
            async with self.sessions[user].post(
                url, data=form(i, end), headers=headers(i, self.tokens[user], group)
            ) as resp:
                body = await resp.read()
                status, encoding = resp.status, resp.headers.get("Content-Encoding")
        except (TimeoutError, aiohttp.ClientError) as exc:
            out.failures.append(f"panel {i + 1}: {exc!r}")
            return
        out.seconds.append(time.perf_counter() - started)
        if status != 200:
            out.failures.append(f"panel {i + 1}: HTTP {status} {body[:200]!r}")
        elif user == 0:
            out.bodies[i] = (body, encoding)
