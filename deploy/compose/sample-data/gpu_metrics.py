"""Sample GPU metrics for the compose stack: a live exporter and an OpenMetrics backfill file.

The series imitate what NERC's hub sees: dcgm-exporter runs in the GPU operator's namespace
and reports the consuming pod's namespace, which Prometheus stores as `exported_namespace`;
kube-state-metrics reports GPU requests with the tenant in `namespace`. Values are smooth
functions of time, so the same instant always gives the same number.

    python gpu_metrics.py serve --port 9400              # live /metrics (scraped with honor_labels)
    python gpu_metrics.py backfill out.om --hours 6      # promtool tsdb create-blocks-from openmetrics

A second hub's data (deploy/compose/hubs.yaml): `--rename nerc-ocp-test=innabox-gpu --phase 7`
renames a cluster and shifts every wave, so the two hubs hold different series and values.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GPU_OPERATOR_NAMESPACE = "nvidia-gpu-operator"
MODEL = "NVIDIA A100-SXM4-40GB"
# Set from the command line for a second hub: cluster renames and a phase shift of every wave.
RENAME: dict[str, str] = {}
PHASE = [0.0]


@dataclass(frozen=True)
class Gpu:
    """One GPU of a cluster and the tenant pod using it."""

    cluster: str
    node: str
    index: int
    tenant: str
    pod: str

    @property
    def seed(self) -> float:
        """Phase offset so GPUs do not move in lockstep."""
        return float(sum(ord(c) for c in f"{self.cluster}{self.node}{self.index}") % 97)


GPUS: tuple[Gpu, ...] = (
    Gpu("nerc-ocp-prod", "gpu-node-1", 0, "team-a", "llama-finetune-0"),
    Gpu("nerc-ocp-prod", "gpu-node-1", 1, "team-a", "llama-finetune-0"),
    Gpu("nerc-ocp-prod", "gpu-node-2", 0, "team-b", "wrf-ensemble-3"),
    Gpu("nerc-ocp-prod", "gpu-node-2", 1, "team-c", "yolo-train-1"),
    Gpu("nerc-ocp-test", "gpu-node-a", 0, "team-a", "vllm-serve-0"),
    Gpu("nerc-ocp-test", "gpu-node-a", 1, "team-b", "whisper-batch-2"),
    Gpu("nerc-ocp-test", "gpu-node-b", 0, "team-c", "notebook-0"),
)

FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("kube_pod_container_resource_requests", "gauge", "Requested resources by a container."),
)


def _wave(gpu: Gpu, t: float, period: float) -> float:
    """Return a value in [0, 1] that varies smoothly with time."""
    return 0.5 + 0.45 * math.sin(t / period + gpu.seed + PHASE[0])


def gpu_value(family: str, gpu: Gpu, t: float) -> float:
    """Return the value of one family for one GPU at unix time t."""
    if family == "DCGM_FI_DEV_GPU_UTIL":
        return round(100 * _wave(gpu, t, 600.0))
    if family == "DCGM_FI_DEV_FB_USED":
        return round(40960 * _wave(gpu, t, 1800.0))
    if family == "DCGM_FI_DEV_POWER_USAGE":
        return round(60 + 340 * _wave(gpu, t, 600.0), 3)
    return float(sum(1 for g in GPUS if (g.cluster, g.pod) == (gpu.cluster, gpu.pod)))


def _escape(value: str) -> str:
    """Escape a label value for the text exposition formats."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: dict[str, str]) -> str:
    """Render a label set."""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()) + "}"


def series(family: str) -> Iterator[tuple[str, Gpu]]:
    """Yield (label text, gpu) for every series of a family."""
    for gpu in GPUS:
        cluster = RENAME.get(gpu.cluster, gpu.cluster)
        if family.startswith("DCGM_"):
            labels = {
                "cluster": cluster,
                "namespace": GPU_OPERATOR_NAMESPACE,
                "exported_namespace": gpu.tenant,
                "exported_pod": gpu.pod,
                "exported_container": "main",
                "gpu": str(gpu.index),
                "Hostname": gpu.node,
                "modelName": MODEL,
            }
        else:
            labels = {
                "cluster": cluster,
                "namespace": gpu.tenant,
                "pod": gpu.pod,
                "container": "main",
                "node": gpu.node,
                "resource": "nvidia_com_gpu",
                "unit": "integer",
            }
        yield _labels(labels), gpu


def exposition(t: float) -> str:
    """Return the Prometheus text exposition (0.0.4) at time t."""
    lines: list[str] = []
    for family, kind, help_text in FAMILIES:
        lines += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}"]
        seen: set[str] = set()
        for labels, gpu in series(family):
            if labels in seen:
                continue
            seen.add(labels)
            lines.append(f"{family}{labels} {gpu_value(family, gpu, t)}")
    return "\n".join(lines) + "\n"


def openmetrics(end: float, hours: float, step: float) -> Iterator[str]:
    """Yield an OpenMetrics document with samples every step seconds up to end."""
    start = end - hours * 3600.0
    count = int((end - start) // step)
    for family, kind, help_text in FAMILIES:
        yield f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n"
        seen: set[str] = set()
        for labels, gpu in series(family):
            if labels in seen:
                continue
            seen.add(labels)
            for i in range(count + 1):
                t = start + i * step
                yield f"{family}{labels} {gpu_value(family, gpu, t)} {t:.3f}\n"
    yield "# EOF\n"


class _Handler(BaseHTTPRequestHandler):
    """Serve /metrics; everything else is 404."""

    def do_GET(self) -> None:
        """Answer a scrape."""
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404)
            return
        body = exposition(time.time()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep scrapes out of the compose log."""


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (serve | backfill)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve live /metrics")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=9400)
    fill = sub.add_parser("backfill", help="write an OpenMetrics file for promtool")
    fill.add_argument("out", type=Path)
    fill.add_argument("--hours", type=float, default=6.0)
    fill.add_argument("--step", type=float, default=60.0)
    for command in (serve, fill):
        command.add_argument(
            "--rename", action="append", default=[], metavar="OLD=NEW", help="rename a cluster"
        )
        command.add_argument(
            "--phase", type=float, default=0.0, help="shift every wave (another hub's values)"
        )
    args = parser.parse_args(argv)
    RENAME.clear()
    RENAME.update(pair.split("=", 1) for pair in args.rename)
    PHASE[0] = args.phase
    if args.command == "serve":
        ThreadingHTTPServer((args.host, args.port), _Handler).serve_forever()
        return 0
    # End two minutes ago so the newest backfilled block does not overlap the live head.
    end = time.time() - 120.0
    with args.out.open("w", encoding="utf-8") as fh:
        fh.writelines(openmetrics(end, args.hours, args.step))
    args.out.chmod(0o644)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
