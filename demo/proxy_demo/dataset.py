"""The demo/test dataset: GPU and workload series for hub `moc`, as plain data.

Shapes follow what NERC's Prometheus holds: DCGM series come from dcgm-exporter running in
`nvidia-gpu-operator`, so the consuming pod's namespace is in `exported_namespace`; kube-state
and vLLM series carry `namespace`; some cluster-level series have no project label; a few series
have no `cluster` label at all. Values are deterministic: each sample is a function of the seed,
the series' labels and its timestamp on a fixed 30 s grid, so two datasets built a few seconds
apart agree wherever their grids overlap.
"""

from __future__ import annotations

import hashlib
import math
import re
import time as _time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

HUB = "moc"
CLUSTERS = ("nerc-ocp-prod", "nerc-ocp-test")
NAMESPACES = ("team-a", "team-b", "team-c")
GPU_OPERATOR_NAMESPACE = "nvidia-gpu-operator"
MONITORING_NAMESPACE = "openshift-monitoring"

# The several-hubs demo's second hub: the same shapes under another seed, one cluster renamed and
# one keeping its name (cluster names are per hub: `nerc-ocp-prod` there is another cluster).
SECOND_HUB = "innabox-dev"
SECOND_HUB_SEED = 7
SECOND_HUB_CLUSTERS = MappingProxyType({"nerc-ocp-test": "innabox-gpu"})

STEP = 30
PAST = 3 * 3600
FUTURE = 3 * 3600

# 2024-01-01T00:00:00Z: origin of the counters, so they are monotone and not astronomically large
_COUNTER_ORIGIN = 1_704_067_200

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

Kind = Literal["gauge", "counter"]


@dataclass(frozen=True)
class Series:
    """One time series: its labels (including `__name__`) and `(unix seconds, value)` samples."""

    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]] = ()
    kind: Kind = "gauge"
    _key: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # read-only copy: datasets are shared by session fixtures and must not be mutated
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "samples", tuple(self.samples))
        object.__setattr__(self, "_key", tuple(sorted(self.labels.items())))

    @property
    def name(self) -> str:
        """The metric name (`__name__`)."""
        return self.labels["__name__"]

    def key(self) -> tuple[tuple[str, str], ...]:
        """The label set as a sorted tuple, usable as a dict key."""
        return self._key


# ---------------------------------------------------------------------------- value generators


def _unit(seed: int, key: str, k: int) -> float:
    """Deterministic pseudo-random number in [0, 1) for (seed, series key, grid index)."""
    digest = hashlib.blake2b(f"{seed}|{key}|{k}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _wave(seed: int, key: str, t: float, period: float = 3600.0) -> float:
    """A smooth daily-looking swing in [-1, 1] with a per-series phase."""
    phase = _unit(seed, key, -1) * 2 * math.pi
    return math.sin(2 * math.pi * t / period + phase)


ValueFn = Callable[[int, str, float, int], float]


def _util(busy: bool) -> ValueFn:
    def fn(seed: int, key: str, t: float, k: int) -> float:
        if not busy:
            return 0.0
        base = 40 + 40 * _unit(seed, key, -2)
        v = base + 25 * _wave(seed, key, t) + 10 * (_unit(seed, key, k) - 0.5)
        return float(min(100, max(0, round(v))))

    return fn


def _fb_used(busy: bool) -> ValueFn:
    def fn(seed: int, key: str, t: float, k: int) -> float:
        if not busy:
            return 0.0
        base = 8000 + 28000 * _unit(seed, key, -2)
        return float(round(base + 2000 * _wave(seed, key, t, 5400) + 300 * _unit(seed, key, k)))

    return fn


def _power(busy: bool) -> ValueFn:
    def fn(seed: int, key: str, t: float, k: int) -> float:
        idle = 52 + 6 * _unit(seed, key, k)
        if not busy:
            return round(idle, 3)
        load = 120 + 180 * _unit(seed, key, -2) + 60 * _wave(seed, key, t)
        return round(idle + max(0.0, load), 3)

    return fn


def _small_int(hi: int) -> ValueFn:
    def fn(seed: int, key: str, t: float, k: int) -> float:
        return float(int((hi + 1) * (0.5 + 0.5 * _wave(seed, key, t, 2700)) * _unit(seed, key, k)))

    return fn


def _counter(per_second: float) -> ValueFn:
    def fn(seed: int, key: str, t: float, k: int) -> float:
        # monotone in t (no reset inside the window); rate varies per series via the seed
        r = per_second * (0.5 + _unit(seed, key, -2))
        return float(math.floor(r * (t - _COUNTER_ORIGIN)))

    return fn


def _const(v: float) -> ValueFn:
    def fn(seed: int, key: str, t: float, k: int) -> float:
        return v

    return fn


# ---------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class _Gpu:
    cluster: str
    node: str
    index: int
    model: str
    uuid: str
    # (namespace, pod, container) of the consuming pod, or None when the GPU is idle
    user: tuple[str, str, str] | None


_A100 = "NVIDIA A100-SXM4-40GB"
_V100 = "Tesla V100-PCIE-32GB"

_GPUS = (
    _Gpu(
        "nerc-ocp-prod",
        "wrk-10",
        0,
        _A100,
        "GPU-5f2c6a8e-0b1d-4c3e-9a7f-1e2d3c4b5a60",
        ("team-a", "llama-serve-7d9f8-x2k4p", "vllm"),
    ),
    _Gpu(
        "nerc-ocp-prod",
        "wrk-10",
        1,
        _A100,
        "GPU-5f2c6a8e-0b1d-4c3e-9a7f-1e2d3c4b5a61",
        ("team-a", "train-job-0-master-0", "pytorch"),
    ),
    _Gpu(
        "nerc-ocp-prod",
        "wrk-10",
        2,
        _A100,
        "GPU-5f2c6a8e-0b1d-4c3e-9a7f-1e2d3c4b5a62",
        ("team-b", "notebook-0", "jupyter"),
    ),
    _Gpu("nerc-ocp-prod", "wrk-10", 3, _A100, "GPU-5f2c6a8e-0b1d-4c3e-9a7f-1e2d3c4b5a63", None),
    _Gpu(
        "nerc-ocp-prod",
        "wrk-11",
        0,
        _A100,
        "GPU-8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c40",
        ("team-c", "finetune-1-worker-0", "trainer"),
    ),
    _Gpu("nerc-ocp-prod", "wrk-11", 1, _A100, "GPU-8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c41", None),
    _Gpu(
        "nerc-ocp-test",
        "wrk-3",
        0,
        _V100,
        "GPU-c0ffee00-1111-4222-8333-444455556660",
        ("team-b", "notebook-1", "jupyter"),
    ),
    _Gpu(
        "nerc-ocp-test",
        "wrk-3",
        1,
        _V100,
        "GPU-c0ffee00-1111-4222-8333-444455556661",
        ("team-c", "mistral-serve-5c6b-q8r2t", "vllm"),
    ),
)

_NODES = {
    "nerc-ocp-prod": (("wrk-10", "10.30.6.10"), ("wrk-11", "10.30.6.11"), ("ctl-0", "10.30.6.2")),
    "nerc-ocp-test": (("wrk-3", "10.40.2.13"), ("ctl-0", "10.40.2.2")),
}

_CPU_CORES = {"nerc-ocp-prod": 2304.0, "nerc-ocp-test": 448.0}

# vLLM deployments: (cluster, namespace, pod, model)
_VLLM = (
    ("nerc-ocp-prod", "team-a", "llama-serve-7d9f8-x2k4p", "meta-llama/Llama-3.1-8B-Instruct"),
    ("nerc-ocp-test", "team-c", "mistral-serve-5c6b-q8r2t", "mistralai/Mistral-7B-Instruct-v0.3"),
)

# extra pods per (cluster, namespace) that use no GPU
_OTHER_PODS = {
    ("nerc-ocp-prod", "team-a"): ("web-frontend-6b7c8-abcde",),
    ("nerc-ocp-prod", "team-b"): ("postgres-0",),
    ("nerc-ocp-prod", "team-c"): ("minio-0",),
    ("nerc-ocp-test", "team-a"): ("web-frontend-6b7c8-fghij", "redis-0"),
    ("nerc-ocp-test", "team-b"): ("postgres-0",),
    ("nerc-ocp-test", "team-c"): ("etl-cron-28931220-7tq2m",),
}


def _ip(*parts: str) -> str:
    h = hashlib.blake2b("|".join(parts).encode(), digest_size=2).digest()
    return f"10.{128 + h[0] % 4}.{h[1]}.{1 + (h[0] + h[1]) % 250}"


def _uid(*parts: str) -> str:
    h = hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _dcgm_exporter_pod(cluster: str, node: str) -> str:
    return (
        "nvidia-dcgm-exporter-" + hashlib.blake2b(f"{cluster}|{node}".encode(), digest_size=3).hexdigest()[:5]
    )


def _specs() -> list[tuple[dict[str, str], ValueFn, Kind]]:
    """Every series of the dataset as (labels, value function, kind)."""
    out: list[tuple[dict[str, str], ValueFn, Kind]] = []
    dcgm_metrics: tuple[tuple[str, Callable[[bool], ValueFn]], ...] = (
        ("DCGM_FI_DEV_GPU_UTIL", _util),
        ("DCGM_FI_DEV_FB_USED", _fb_used),
        ("DCGM_FI_DEV_POWER_USAGE", _power),
    )
    for gpu in _GPUS:
        exporter = _dcgm_exporter_pod(gpu.cluster, gpu.node)
        base = {
            "cluster": gpu.cluster,
            "namespace": GPU_OPERATOR_NAMESPACE,
            "pod": exporter,
            "container": "nvidia-dcgm-exporter",
            "job": "nvidia-dcgm-exporter",
            "service": "nvidia-dcgm-exporter",
            "endpoint": "gpu-metrics",
            "instance": _ip(gpu.cluster, exporter) + ":9400",
            "Hostname": gpu.node,
            "gpu": str(gpu.index),
            "device": f"nvidia{gpu.index}",
            "UUID": gpu.uuid,
            "modelName": gpu.model,
            "DCGM_FI_DRIVER_VERSION": "550.90.07",
        }
        if gpu.user is not None:
            ns, pod, container = gpu.user
            base |= {"exported_namespace": ns, "exported_pod": pod, "exported_container": container}
        for name, fn in dcgm_metrics:
            out.append(({"__name__": name, **base}, fn(gpu.user is not None), "gauge"))

    # A tenant running its own exporter: its target namespace (team-b) stays in `namespace`, and
    # the namespace it *claims* (team-c) lands in `exported_namespace` - both labels, different.
    out.append(
        (
            {
                "__name__": "DCGM_FI_DEV_GPU_UTIL",
                "cluster": "nerc-ocp-prod",
                "namespace": "team-b",
                "pod": "own-dcgm-0",
                "job": "team-b-gpu-exporter",
                "instance": _ip("nerc-ocp-prod", "own-dcgm-0") + ":9400",
                "Hostname": "wrk-10",
                "gpu": "2",
                "UUID": "GPU-5f2c6a8e-0b1d-4c3e-9a7f-1e2d3c4b5a62",
                "modelName": _A100,
                "exported_namespace": "team-c",
                "exported_pod": "notebook-0",
            },
            _util(True),
            "gauge",
        )
    )
    # An exporter scraped without relabelling: no cluster label at all (only hub-wide may see it).
    out.append(
        (
            {
                "__name__": "DCGM_FI_DEV_GPU_UTIL",
                "namespace": GPU_OPERATOR_NAMESPACE,
                "job": "edge-dcgm",
                "instance": "192.168.50.7:9400",
                "Hostname": "edge-gpu-1",
                "gpu": "0",
                "UUID": "GPU-0e0e0e0e-1f1f-4a2a-8b3b-4c4c4c4c4c40",
                "modelName": "NVIDIA L40S",
                "exported_namespace": "team-a",
                "exported_pod": "edge-infer-0",
            },
            _util(True),
            "gauge",
        )
    )

    # kube-state-metrics: kube_pod_info per pod, kube_node_info per node (no project label)
    for cluster in CLUSTERS:
        ksm = {
            "cluster": cluster,
            "job": "kube-state-metrics",
            "container": "kube-rbac-proxy-main",
            "service": "kube-state-metrics",
            "endpoint": "https-main",
            "instance": _ip(cluster, "kube-state-metrics") + ":8443",
        }
        pods: list[tuple[str, str, str]] = []  # (namespace, pod, node)
        for gpu in _GPUS:
            if gpu.cluster == cluster and gpu.user is not None:
                pods.append((gpu.user[0], gpu.user[1], gpu.node))
        gpu_nodes = sorted({g.node for g in _GPUS if g.cluster == cluster})
        for node in gpu_nodes:
            pods.append((GPU_OPERATOR_NAMESPACE, _dcgm_exporter_pod(cluster, node), node))
        pods.append((MONITORING_NAMESPACE, "prometheus-k8s-0", _NODES[cluster][-1][0]))
        for (c, ns), names in _OTHER_PODS.items():
            if c == cluster:
                pods.extend((ns, p, _NODES[cluster][0][0]) for p in names)
        for ns, pod, node in sorted(set(pods)):
            host_ip = dict(_NODES[cluster])[node]
            labels = {
                "__name__": "kube_pod_info",
                **ksm,
                "namespace": ns,
                "pod": pod,
                "node": node,
                "host_ip": host_ip,
                "pod_ip": _ip(cluster, ns, pod),
                "uid": _uid(cluster, ns, pod),
                "created_by_kind": "StatefulSet" if pod[-2:] == "-0" else "ReplicaSet",
                "host_network": "false",
            }
            out.append((labels, _const(1.0), "gauge"))
        for node, ip in _NODES[cluster]:
            out.append(
                (
                    {
                        "__name__": "kube_node_info",
                        **ksm,
                        "node": node,
                        "internal_ip": ip,
                        "kernel_version": "5.14.0-284.73.1.el9_2.x86_64",
                        "os_image": "Red Hat Enterprise Linux CoreOS 414.92.202407091253-0 (Plow)",
                        "container_runtime_version": "cri-o://1.27.6-6.rhaos4.14.gitf8d3d3e.el9",
                    },
                    _const(1.0),
                    "gauge",
                )
            )
        out.append(
            ({"__name__": "cluster:cpu_cores:sum", "cluster": cluster}, _const(_CPU_CORES[cluster]), "gauge")
        )

    # vLLM serving pods (the telemetry portal's LLM panels)
    for cluster, ns, pod, model in _VLLM:
        base = {
            "cluster": cluster,
            "namespace": ns,
            "pod": pod,
            "container": "vllm",
            "job": "vllm",
            "service": pod.rsplit("-", 2)[0],
            "endpoint": "http",
            "instance": _ip(cluster, ns, pod) + ":8000",
            "model_name": model,
        }
        out.append(({"__name__": "vllm:num_requests_running", **base}, _small_int(12), "gauge"))
        out.append(({"__name__": "vllm:num_requests_waiting", **base}, _small_int(4), "gauge"))
        for reason, rate in (("stop", 0.8), ("length", 0.1)):
            out.append(
                (
                    {"__name__": "vllm:request_success_total", **base, "finished_reason": reason},
                    _counter(rate),
                    "counter",
                )
            )

    # hub-side series without any cluster label
    for job, inst in (("thanos-querier", "10.131.0.20:9090"), ("observatorium-api", "10.131.0.31:8080")):
        out.append(({"__name__": "up", "job": job, "instance": inst}, _const(1.0), "gauge"))
    return out


def build_dataset(
    now: float | None = None,
    *,
    seed: int = 42,
    step: int = STEP,
    past: int = PAST,
    future: int = FUTURE,
    clusters: Mapping[str, str] | None = None,
) -> list[Series]:
    """The demo dataset: samples every `step` s from `now - past` to `now + future`, seeded.

    `clusters` renames cluster label values (another hub's data: `SECOND_HUB_CLUSTERS`).
    """
    now = _time.time() if now is None else now
    first = math.ceil((now - past) / step)
    last = math.floor((now + future) / step)
    grid = [(k, float(k * step)) for k in range(first, last + 1)]
    out: list[Series] = []
    rename = dict(clusters or {})
    for labels, fn, kind in _specs():
        if labels.get("cluster") in rename:
            labels = {**labels, "cluster": rename[labels["cluster"]]}
        key = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        samples = tuple((t, fn(seed, key, t, k)) for k, t in grid)
        out.append(Series(labels, samples, kind))
    return out


# ---------------------------------------------------------------------------- OpenMetrics


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _family(s: Series) -> str:
    if s.kind == "counter":
        if not s.name.endswith("_total"):
            raise ValueError(f"counter {s.name!r} must end in _total (OpenMetrics)")
        return s.name[: -len("_total")]
    return s.name


def to_openmetrics(series: Iterable[Series]) -> str:
    """Render series as OpenMetrics text (families grouped, samples timestamped, `# EOF`)."""
    families: dict[str, list[Series]] = {}
    kinds: dict[str, Kind] = {}
    for s in series:
        if not _METRIC_NAME.match(s.name):
            raise ValueError(f"invalid metric name {s.name!r}")
        fam = _family(s)
        if kinds.setdefault(fam, s.kind) != s.kind:
            raise ValueError(f"metric family {fam!r} mixes gauge and counter series")
        families.setdefault(fam, []).append(s)
    lines: list[str] = []
    for fam, members in families.items():
        lines.append(f"# TYPE {fam} {kinds[fam]}")
        # OpenMetrics wants the samples of one series together and in time order
        for s in sorted(members, key=Series.key):
            parts = []
            for lname, lvalue in sorted(s.labels.items()):
                if lname == "__name__":
                    continue
                if not _LABEL_NAME.match(lname):
                    raise ValueError(f"invalid label name {lname!r}")
                parts.append(f'{lname}="{_escape(lvalue)}"')
            head = s.name + ("{" + ",".join(parts) + "}" if parts else "")
            for t, v in sorted(s.samples):
                lines.append(f"{head} {_number(v)} {_number(t)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def metric_names(series: Sequence[Series]) -> list[str]:
    """Sorted distinct metric names of `series`."""
    return sorted({s.name for s in series})
