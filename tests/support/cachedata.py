"""A dataset for the results-cache tests: three days of series crossing UTC midnights (docs/caching.md).

The demo dataset spans 3 h around session start; the results cache splits `query_range` answers
at day boundaries and stores only answers older than the freshness window, so its tests need data
reaching more than two days back, across at least two midnights, plus samples up to (and a little
past) now. Same cluster and project names as the demo realm, so the demo identities' grants apply.
Values are deterministic functions of the labels and the time (no scraping, no rules): a query
answers the same whenever it is asked, which lets an answer through the proxy be compared with the
same query sent straight to Prometheus.

Shapes: a counter per pod (`rate`), a gauge (`sum by`, `offset`), classic histogram buckets
(`histogram_quantile`), and one series without a cluster label (only hub-wide callers see it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from proxy_demo.dataset import Series

CLUSTERS = ("nerc-ocp-prod", "nerc-ocp-test")
PROJECTS = ("team-a", "team-b", "team-c")
STEP = 60  # seconds between samples
DAYS = 3.2  # how far back the data reaches: more than two days, so at least two midnights
FUTURE = 3600  # samples reach an hour past session start ("recent" data while the tests run)
BUCKETS = ("0.1", "0.5", "1", "5", "+Inf")
_ORIGIN = 1_704_067_200  # 2024-01-01T00:00:00Z: counters start here, so they stay small and monotone

COUNTER = "cache_http_requests_total"
GAUGE = "cache_queue_depth"
HISTOGRAM = "cache_request_seconds"
UNLABELLED = "cache_hub_up"


def _unit(*parts: str) -> float:
    """A deterministic number in [0, 1) for these parts."""
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _grid(now: float, days: float, future: int, step: int) -> list[float]:
    first = math.floor((now - days * 86400) / step)
    last = math.floor((now + future) / step)
    return [float(k * step) for k in range(first, last + 1)]


def build_cache_dataset(
    now: float, *, days: float = DAYS, future: int = FUTURE, step: int = STEP
) -> list[Series]:
    """The cache-test series, sampled every `step` s from `now - days` to `now + future`."""
    grid = _grid(now, days, future, step)
    out: list[Series] = []
    for cluster in CLUSTERS:
        for project in PROJECTS:
            base = {"cluster": cluster, "namespace": project}
            for pod in ("api-0", "api-1"):
                rate = 0.5 + 4 * _unit(cluster, project, pod)
                labels = {"__name__": COUNTER, **base, "pod": pod, "code": "200"}
                samples = [(t, float(math.floor(rate * (t - _ORIGIN)))) for t in grid]
                out.append(Series(labels, samples, "counter"))
            phase = 2 * math.pi * _unit(cluster, project, "phase")
            swing = [20 + 15 * math.sin(2 * math.pi * t / 21600 + phase) for t in grid]
            depth = [
                (t, float(round(s + 5 * _unit(str(t), project)))) for t, s in zip(grid, swing, strict=True)
            ]
            out.append(Series({"__name__": GAUGE, **base}, depth, "gauge"))
            total = 1 + 3 * _unit(cluster, project, "requests")
            for i, le in enumerate(BUCKETS):
                share = (i + 1) / len(BUCKETS) if le != "+Inf" else 1.0
                share *= 0.6 + 0.4 * _unit(cluster, project, le) if le != "+Inf" else 1.0
                per_s = total * min(1.0, share)
                labels = {"__name__": f"{HISTOGRAM}_bucket", **base, "le": le}
                out.append(Series(labels, [(t, float(math.floor(per_s * (t - _ORIGIN)))) for t in grid]))
    out.append(Series({"__name__": UNLABELLED, "job": "hub"}, [(t, 1.0) for t in grid]))
    return _monotone_buckets(out)


def _monotone_buckets(series: Sequence[Series]) -> list[Series]:
    """Make bucket counts cumulative in `le` (histogram_quantile needs that), keeping the rest."""
    out: list[Series] = []
    running: dict[tuple[str, str], list[float]] = {}
    for s in series:
        if s.name != f"{HISTOGRAM}_bucket":
            out.append(s)
            continue
        key = (s.labels["cluster"], s.labels["namespace"])
        previous = running.get(key)
        values = [v for _, v in s.samples]
        if previous is not None:
            values = [max(v, p) for v, p in zip(values, previous, strict=True)]
        running[key] = values
        out.append(Series(s.labels, [(t, v) for (t, _), v in zip(s.samples, values, strict=True)]))
    return out
