"""Benchmark of the PromQL core: guard + parse + analyse + rewrite + verify per query.

Run: `python bench/promql_bench.py`. Prints p50/p99 in milliseconds for typical Grafana panel
queries (cold: a distinct text each time, so the parse cache never hits; warm: repeated text),
for a narrowed query, and for 16/64 KB queries (measured with limits raised to admit them).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from proxy.promql import Holdings, LabelModel, Limits, analyse_query, enforce_query

MODEL = LabelModel()
PROJECT = Holdings(projects={"nerc-ocp-prod": frozenset({"team-a", "team-b"})})
MIXED = Holdings(clusters=frozenset({"c1"}), projects={"nerc-ocp-prod": frozenset({"team-a"})})
PANELS = [
    'sum by (namespace) (DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",namespace="team-a"})',
    'sum(rate(container_cpu_usage_seconds_total{cluster="nerc-ocp-prod",namespace="team-a",'
    'container!=""}[5m])) by (pod)',
    "histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{"
    'cluster="nerc-ocp-prod",namespace=~"team-a|team-b"}[5m])))',
    'avg_over_time(DCGM_FI_DEV_FB_USED{cluster="nerc-ocp-prod",exported_namespace="team-a"}[1h])',
    'kube_pod_container_resource_requests{cluster="nerc-ocp-prod",namespace="team-a",'
    'resource="nvidia_com_gpu"} * on(pod) group_left(node) kube_pod_info{cluster="nerc-ocp-prod",'
    'namespace="team-a"}',
]


def _timed(run: Callable[[int], object], rounds: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU-time (process_time: robust on a loaded machine) samples in ms."""
    wall, cpu = [], []
    for i in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        run(i)
        cpu.append((time.process_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return wall, cpu


def _report(label: str, timed: tuple[list[float], list[float]]) -> None:
    samples, cpu = sorted(timed[0]), timed[1]
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(
        f"{label:58} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   cpu p50 {statistics.median(cpu):8.3f} ms"
        f"   (n={len(samples)})"
    )


def _big_query(size: int) -> str:
    # a balanced sum of many panels: the realistic shape of a huge dashboard query
    terms: list[str] = []
    i = 0
    while sum(len(t) + 3 for t in terms) < size:
        terms.append(f'sum(rate(m_{i}{{cluster="nerc-ocp-prod",namespace="team-a",job="j{i}"}}[5m]))')
        i += 1
    while len(terms) > 1:
        terms = [
            f"({a} + {b})" if b else a
            for a, b in zip(terms[::2], [*terms[1::2], ""][: len(terms[::2])], strict=True)
        ]
    return terms[0]


def _runner(query: str, limits: Limits, holdings: Holdings, *, cold: bool) -> Callable[[int], str]:
    def run(i: int) -> str:
        # cold: a distinct text per round, so the parse cache never answers
        text = f"{query} + {i}" if cold else query
        return enforce_query(analyse_query(text, limits, MODEL), holdings, "narrow")

    return run


def main() -> None:
    """Print the latency table."""
    limits = Limits()
    for query in PANELS:
        _report("warm " + query[:52], _timed(_runner(query, limits, PROJECT, cold=False), 3000))
        _report("cold " + query[:52], _timed(_runner(query, limits, PROJECT, cold=True), 2000))
    narrow = "sum by (namespace) (rate(DCGM_FI_DEV_GPU_UTIL[5m]))"
    _report(
        "cold narrowed (3 branches) " + narrow[:30], _timed(_runner(narrow, limits, MIXED, cold=True), 1000)
    )
    for kib in (16, 64):
        query = _big_query(kib * 1024)
        big = Limits(max_bytes=kib * 1024 * 2, max_depth=64, max_operators=4096)
        _report(
            f"cold {len(query) // 1024} KB balanced query (limits raised)",
            _timed(_runner(query, big, PROJECT, cold=True), 20),
        )


if __name__ == "__main__":
    main()
