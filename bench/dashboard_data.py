"""The dashboard replay's data: a GPU project big enough that Prometheus' evaluation costs real time.

Project `team-a` on `nerc-ocp-prod` runs 64 GPUs (8 nodes × 8) beside 32 pods and 6 vLLM
servers; `team-b` holds about a third of that beside it, so selectors also skip series. Every
series carries NERC's label shapes (DCGM through dcgm-exporter with `exported_namespace`,
cAdvisor and kube-state-metrics with `namespace`, vLLM histograms) and a sample every 30 s for the
last `HISTORY` seconds and `FUTURE` seconds ahead (for the targets run later), written as
OpenMetrics and backfilled with `promtool`. Values are cheap deterministic functions of the series
and the time: no hashing per sample, so generation takes seconds, not minutes.
"""

from __future__ import annotations

import math
import subprocess
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

CLUSTER, PROJECT = "nerc-ocp-prod", "team-a"
STEP = 30
HISTORY = 7 * 3600 + 1800  # the 6 h window, its 1 h lookbacks and the refreshes
FUTURE = 1800  # later targets' windows end later: every target sees a full window
TEAMS = {"team-a": 8, "team-b": 3}  # GPU nodes per project (8 GPUs each)
GPUS_PER_NODE = 8
VLLM_PODS = {"team-a": 6, "team-b": 2}
MODELS = ("meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3")
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)

Value = Callable[[int, float], float]  # (grid index, unix seconds) -> sample value


@dataclass(frozen=True)
class Written:
    """What `write_openmetrics` wrote."""

    series: int
    samples: int
    first: int
    last: int


def _seed(text: str) -> float:
    """A stable number in [0, 1) for a series (its phase, base level, rate)."""
    return (zlib.crc32(text.encode()) % 100_003) / 100_003


def _noise(k: int, seed: float) -> float:
    """Cheap deterministic jitter in [0, 1) for grid index `k`."""
    return ((k * 7919 + int(seed * 1e5) * 104_729) % 997) / 997


def gauge(base: float, swing: float, jitter: float, seed: float, lo: float = 0.0, hi: float = 1e18) -> Value:
    """A value swinging around `base` over ~2 h with jitter, clamped to [lo, hi], rounded."""
    phase = seed * 2 * math.pi

    def value(k: int, t: float) -> float:
        v = base + swing * math.sin(2 * math.pi * t / 7200 + phase) + jitter * (_noise(k, seed) - 0.5)
        return float(round(min(hi, max(lo, v)), 1))

    return value


def counter(per_second: float, seed: float) -> Value:
    """A monotone counter whose rate varies with the time of day (no resets in the window)."""
    origin = 1_704_067_200

    def value(k: int, t: float) -> float:
        s = t - origin
        return float(math.floor(per_second * (s + 600 * math.sin(2 * math.pi * s / 7200 + seed * 6))))

    return value


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def _specs() -> Iterator[tuple[str, dict[str, str], Value]]:
    """Every series as (metric name, labels, value function)."""
    for team, nodes in TEAMS.items():
        for n in range(nodes):
            node = f"gpu-{team[-1]}{n:02d}"
            exporter = f"nvidia-dcgm-exporter-{zlib.crc32(node.encode()) % 100000:05d}"
            for g in range(GPUS_PER_NODE):
                pod = f"{team}-train-{n:02d}-{g // 4}" if g < 6 else f"{team}-serve-{n % 6}-{g}"
                base = {
                    "cluster": CLUSTER,
                    "namespace": "nvidia-gpu-operator",
                    "pod": exporter,
                    "job": "nvidia-dcgm-exporter",
                    "instance": f"10.129.{n}.{10 + g}:9400",
                    "Hostname": node,
                    "gpu": str(g),
                    "UUID": f"GPU-{zlib.crc32(f'{node}/{g}'.encode()):08x}-4c3e-9a7f-1e2d3c4b5a60",
                    "modelName": "NVIDIA A100-SXM4-40GB" if n % 3 else "NVIDIA H100 80GB HBM3",
                    "exported_namespace": team,
                    "exported_pod": pod,
                    "exported_container": "pytorch" if "train" in pod else "vllm",
                }
                s = _seed(node + str(g))
                yield "DCGM_FI_DEV_GPU_UTIL", base, gauge(60 * s + 20, 30, 20, s, 0, 100)
                yield "DCGM_FI_DEV_FB_USED", base, gauge(8000 + 28000 * s, 3000, 600, s, 0, 40960)
                yield "DCGM_FI_DEV_POWER_USAGE", base, gauge(150 + 200 * s, 80, 30, s, 50, 700)
                yield "DCGM_FI_DEV_GPU_TEMP", base, gauge(45 + 20 * s, 8, 4, s, 25, 90)
                yield "DCGM_FI_PROF_GR_ENGINE_ACTIVE", base, gauge(0.3 + 0.5 * s, 0.2, 0.1, s, 0, 1)
                yield "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", base, counter(150_000 + 200_000 * s, s)
        for p in range(nodes * 4):
            pod = f"{team}-work-{p:03d}-{zlib.crc32(f'{team}{p}'.encode()) % 100000:05d}"
            cad = {
                "cluster": CLUSTER,
                "namespace": team,
                "pod": pod,
                "container": "main",
                "job": "kubelet",
                "instance": f"10.30.{p // 32}.{p % 32 + 10}:10250",
                "node": f"gpu-{team[-1]}{p % nodes:02d}",
            }
            s = _seed(pod)
            yield "container_cpu_usage_seconds_total", cad, counter(0.5 + 6 * s, s)
            yield "container_memory_working_set_bytes", cad, gauge(2e9 + 30e9 * s, 1e9, 2e8, s, 1e8)
            yield "container_network_receive_bytes_total", cad, counter(1e5 + 5e6 * s, s)
            ksm = {k: v for k, v in cad.items() if k not in ("job", "instance")}
            ksm |= {"job": "kube-state-metrics", "resource": "nvidia_com_gpu", "unit": "integer"}
            yield "kube_pod_container_resource_requests", ksm, gauge(1 + (p % 4), 0, 0, s)
        for v in range(VLLM_PODS[team]):
            model = MODELS[v % len(MODELS)]
            pod = f"{team}-vllm-{v:02d}-{zlib.crc32(f'{team}v{v}'.encode()) % 100000:05d}"
            vl = {
                "cluster": CLUSTER,
                "namespace": team,
                "pod": pod,
                "job": "vllm",
                "instance": f"10.131.{v}.7:8000",
                "model_name": model,
            }
            s = _seed(pod)
            rate = 2 + 10 * s
            yield "vllm:num_requests_running", vl, gauge(8 * s + 2, 4, 3, s, 0)
            yield "vllm:num_requests_waiting", vl, gauge(2 * s, 2, 2, s, 0)
            for reason, share in (("stop", 0.9), ("length", 0.1)):
                yield (
                    "vllm:request_success_total",
                    {**vl, "finished_reason": reason},
                    counter(rate * share, s),
                )
            yield "vllm:prompt_tokens_total", vl, counter(rate * 800, s)
            yield "vllm:generation_tokens_total", vl, counter(rate * 250, s)
            for hist, scale in (("e2e_request_latency_seconds", 1.0), ("time_to_first_token_seconds", 0.05)):
                for le in (*BUCKETS, math.inf):
                    share = 1.0 if le == math.inf else 1 - math.exp(-le / (scale * (2 + 6 * s)))
                    label = "+Inf" if le == math.inf else str(le)
                    yield f"vllm:{hist}_bucket", {**vl, "le": label}, counter(rate * share, s)
                yield f"vllm:{hist}_count", vl, counter(rate, s)
                yield f"vllm:{hist}_sum", vl, counter(rate * scale * (2 + 6 * s), s)


def write_openmetrics(out: TextIO, now: float, history: int = HISTORY, future: int = FUTURE) -> Written:
    """Write every series from `now - history` to `now + future` (30 s grid) as OpenMetrics text."""
    first, last = math.ceil((now - history) / STEP), math.floor((now + future) / STEP)
    grid = [(k, float(k * STEP)) for k in range(first, last + 1)]
    by_name: dict[str, list[tuple[dict[str, str], Value]]] = {}
    for name, labels, fn in _specs():
        by_name.setdefault(name, []).append((labels, fn))
    series = 0
    for name, members in by_name.items():
        out.write(f"# TYPE {name} unknown\n")
        for labels, fn in members:
            head = f"{name}{{{_labels(labels)}}} "
            out.write("".join(f"{head}{fn(k, t)!r} {int(t)}\n" for k, t in grid))
            series += 1
    out.write("# EOF\n")
    return Written(series, series * len(grid), int(grid[0][1]), int(grid[-1][1]))


def backfill(promtool: Path, data_dir: Path, now: float, workdir: Path) -> Written:
    """Generate the data into `data_dir` as TSDB blocks (OpenMetrics, then `promtool`)."""
    om = workdir / "dashboard.om"
    with om.open("w", encoding="utf-8") as fh:
        written = write_openmetrics(fh, now)
    data_dir.mkdir(parents=True, exist_ok=True)
    with (workdir / "backfill.log").open("wb") as log:
        subprocess.run(
            [str(promtool), "tsdb", "create-blocks-from", "openmetrics", str(om), str(data_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=900,
        )
    om.unlink()
    return written
