"""The demo dataset's shape, determinism and OpenMetrics rendering (checked by real promtool)."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest

from proxy_demo.dataset import (
    CLUSTERS,
    FUTURE,
    GPU_OPERATOR_NAMESPACE,
    NAMESPACES,
    PAST,
    STEP,
    Series,
    build_dataset,
    metric_names,
    to_openmetrics,
)
from proxy_demo.prometheus import PrometheusUnavailable, ensure_prometheus

NOW = 1_800_000_015.0  # fixed instant, deliberately off the 30 s grid


@pytest.fixture(scope="module")
def dataset() -> list[Series]:
    """The dataset at a fixed instant."""
    return build_dataset(NOW)


def test_has_the_documented_metrics(dataset: list[Series]) -> None:
    """GPU, kube-state, vLLM and cluster-level metrics are all present."""
    names = set(metric_names(dataset))
    assert {
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_POWER_USAGE",
        "kube_pod_info",
        "kube_node_info",
        "vllm:num_requests_running",
        "vllm:request_success_total",
        "cluster:cpu_cores:sum",
        "up",
    } <= names


def test_covers_both_clusters_and_every_namespace(dataset: list[Series]) -> None:
    """Every (cluster, team namespace) pair has at least one series, via either project label."""
    for cluster in CLUSTERS:
        for ns in NAMESPACES:
            assert any(
                s.labels.get("cluster") == cluster
                and ns in (s.labels.get("namespace"), s.labels.get("exported_namespace"))
                for s in dataset
            ), (cluster, ns)


def test_dcgm_series_use_exported_namespace(dataset: list[Series]) -> None:
    """DCGM series come from the operator namespace and carry the tenant in exported_namespace."""
    dcgm = [
        s for s in dataset if s.name.startswith("DCGM_") and s.labels.get("job") == "nvidia-dcgm-exporter"
    ]
    assert dcgm
    assert all(s.labels["namespace"] == GPU_OPERATOR_NAMESPACE for s in dcgm)
    used = [s for s in dcgm if "exported_namespace" in s.labels]
    idle = [s for s in dcgm if "exported_namespace" not in s.labels]
    assert used and idle
    assert {s.labels["exported_namespace"] for s in used} == set(NAMESPACES)


def test_has_the_visibility_edge_cases(dataset: list[Series]) -> None:
    """Two different project labels, cluster-only series and cluster-less series all exist."""
    both_differ = [
        s
        for s in dataset
        if s.labels.get("namespace") in NAMESPACES
        and s.labels.get("exported_namespace") in NAMESPACES
        and s.labels["namespace"] != s.labels["exported_namespace"]
    ]
    assert both_differ
    cluster_only = [
        s
        for s in dataset
        if "cluster" in s.labels and not {"namespace", "exported_namespace"} & s.labels.keys()
    ]
    assert {s.name for s in cluster_only} >= {"cluster:cpu_cores:sum", "kube_node_info"}
    no_cluster = [s for s in dataset if "cluster" not in s.labels]
    assert {s.name for s in no_cluster} >= {"up", "DCGM_FI_DEV_GPU_UTIL"}


def test_label_sets_are_unique_and_non_empty(dataset: list[Series]) -> None:
    """No two series share a label set and no label value is empty (Prometheus drops those)."""
    assert len({s.key() for s in dataset}) == len(dataset)
    assert all(v for s in dataset for v in s.labels.values())


def test_samples_every_30s_from_3h_back_to_3h_ahead(dataset: list[Series]) -> None:
    """Samples sit on the 30 s grid and span [now - 3 h, now + 3 h]."""
    for s in dataset:
        ts = [t for t, _ in s.samples]
        assert all(b - a == STEP for a, b in itertools.pairwise(ts))
        assert all(t % STEP == 0 for t in ts)
        assert NOW - PAST <= ts[0] < NOW - PAST + STEP
        assert NOW + FUTURE - STEP < ts[-1] <= NOW + FUTURE


def test_values_are_plausible(dataset: list[Series]) -> None:
    """Utilisation within 0–100, counters monotone, info metrics 1."""
    for s in dataset:
        values = [v for _, v in s.samples]
        if s.name == "DCGM_FI_DEV_GPU_UTIL":
            assert all(0 <= v <= 100 for v in values)
        if s.kind == "counter":
            assert values == sorted(values)
            assert values[-1] > values[0]
        if s.name in ("kube_pod_info", "kube_node_info"):
            assert set(values) == {1.0}


def test_deterministic_and_grid_stable() -> None:
    """Same seed → same data; a later build agrees on every shared timestamp; seeds matter."""
    a, b = build_dataset(NOW), build_dataset(NOW)
    assert a == b
    later = {s.key(): dict(s.samples) for s in build_dataset(NOW + 95)}
    for s in a:
        shared = dict(s.samples).keys() & later[s.key()].keys()
        assert len(shared) > 700
        assert all(dict(s.samples)[t] == later[s.key()][t] for t in shared)
    other = build_dataset(NOW, seed=7)
    assert [s.samples for s in other] != [s.samples for s in a]


def test_series_is_read_only() -> None:
    """A Series' labels cannot be mutated (datasets are shared between fixtures)."""
    s = Series({"__name__": "m"}, [(1.0, 2.0)])
    with pytest.raises(TypeError):
        s.labels["x"] = "y"  # type: ignore[index]
    assert s.samples == ((1.0, 2.0),)


def test_openmetrics_text_shape() -> None:
    """TYPE lines once per family, counters named without `_total`, escaping, `# EOF` last."""
    text = to_openmetrics(
        [
            Series({"__name__": "g", "a": 'q"b\\n\nx'}, [(10.0, 1.5), (0.0, float("nan"))]),
            Series({"__name__": "g", "a": "z"}, [(0.0, float("inf"))]),
            Series({"__name__": "c_total"}, [(0.0, 3.0)], "counter"),
        ]
    )
    lines = text.splitlines()
    assert lines[0] == "# TYPE g gauge"
    assert lines[1] == 'g{a="q\\"b\\\\n\\nx"} NaN 0'
    assert lines[2] == 'g{a="q\\"b\\\\n\\nx"} 1.5 10'
    assert lines[3] == 'g{a="z"} +Inf 0'
    assert lines[4:] == ["# TYPE c counter", "c_total 3 0", "# EOF"]
    assert text.endswith("# EOF\n")


@pytest.mark.parametrize(
    "bad",
    [
        Series({"__name__": "c"}, [(0.0, 1.0)], "counter"),
        Series({"__name__": "1m"}, [(0.0, 1.0)]),
        Series({"__name__": "m", "bad-label": "x"}, [(0.0, 1.0)]),
    ],
    ids=["counter-without-total", "bad-metric-name", "bad-label-name"],
)
def test_openmetrics_rejects_invalid_series(bad: Series) -> None:
    """Names OpenMetrics cannot carry are refused instead of producing a broken file."""
    with pytest.raises(ValueError):
        to_openmetrics([bad])


def test_openmetrics_rejects_mixed_family() -> None:
    """A family cannot be both gauge and counter."""
    with pytest.raises(ValueError, match="mixes"):
        to_openmetrics(
            [
                Series({"__name__": "x_total"}, [(0.0, 1.0)], "counter"),
                Series({"__name__": "x"}, [(0.0, 1.0)]),
            ]
        )


def _promtool() -> Path:
    try:
        return ensure_prometheus().promtool
    except PrometheusUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.prometheus
def test_promtool_backfills_the_dataset(tmp_path: Path, dataset: list[Series]) -> None:
    """The full dataset's OpenMetrics is accepted by `promtool tsdb create-blocks-from`."""
    om = tmp_path / "d.om"
    om.write_text(to_openmetrics(dataset))
    res = subprocess.run(
        [str(_promtool()), "tsdb", "create-blocks-from", "openmetrics", str(om), str(tmp_path / "db")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert any((tmp_path / "db").iterdir())


@pytest.mark.prometheus
def test_promtool_round_trips_escaped_labels(tmp_path: Path) -> None:
    """What promtool stores from our text has exactly our label values (escaping is right)."""
    value = 'quote " backslash \\ newline \n end'
    om = tmp_path / "d.om"
    om.write_text(to_openmetrics([Series({"__name__": "m", "v": value}, [(NOW, 4.0)])]))
    tool = str(_promtool())
    db = tmp_path / "db"
    subprocess.run(
        [tool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(db)], capture_output=True, check=True
    )
    (db / "wal").mkdir()  # promtool 2.42's dump insists on a WAL dir; backfill writes none
    dump = subprocess.run([tool, "tsdb", "dump", str(db)], capture_output=True, text=True, check=True).stdout
    # promtool dump prints labels Go-quoted (strconv.Quote): \" \\ \n
    assert 'v="quote \\" backslash \\\\ newline \\n end"' in dump
    assert f"4 {int(NOW * 1000)}" in dump
