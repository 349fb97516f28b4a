"""The oracle's visibility rule (docs/authorization.md) on label sets × grants, and its comparisons."""

from __future__ import annotations

import pytest

from tests.support.oracle import (
    Grant,
    assert_same_result,
    diff_results,
    filter_visible,
    leaked_label_names,
    leaked_label_values,
    leaked_series,
    visible,
)

PROD, TEST = "nerc-ocp-prod", "nerc-ocp-test"

# label sets of interest (metric name included where the trust-limit test needs it)
DCGM_A = {
    "__name__": "DCGM_FI_DEV_GPU_UTIL",
    "cluster": PROD,
    "namespace": "nvidia-gpu-operator",
    "exported_namespace": "team-a",
}
DCGM_IDLE = {"__name__": "DCGM_FI_DEV_GPU_UTIL", "cluster": PROD, "namespace": "nvidia-gpu-operator"}
SPOOF = {
    "__name__": "DCGM_FI_DEV_GPU_UTIL",
    "cluster": PROD,
    "namespace": "team-b",
    "exported_namespace": "team-c",
}
POD_A = {"__name__": "kube_pod_info", "cluster": PROD, "namespace": "team-a"}
POD_A_TEST = {"__name__": "kube_pod_info", "cluster": TEST, "namespace": "team-a"}
CLUSTER_ONLY = {"__name__": "cluster:cpu_cores:sum", "cluster": PROD}
NO_CLUSTER = {
    "__name__": "DCGM_FI_DEV_GPU_UTIL",
    "exported_namespace": "team-a",
    "namespace": "nvidia-gpu-operator",
}
EMPTY_CLUSTER = {"__name__": "up", "cluster": "", "namespace": "team-a"}

HUB = Grant.hub()
NOTHING = Grant.nothing()
C_PROD = Grant.of_clusters(PROD)
C_TEST = Grant.of_clusters(TEST)
P_A = Grant.of_projects(PROD, "team-a")
P_B = Grant.of_projects(PROD, "team-b")
P_C = Grant.of_projects(PROD, "team-c")
P_A_TEST = Grant.of_projects(TEST, "team-a")
P_OPERATOR = Grant.of_projects(PROD, "nvidia-gpu-operator")

TABLE = [
    # (labels, grant, visible?)
    (DCGM_A, HUB, True),
    (DCGM_A, NOTHING, False),
    (DCGM_A, C_PROD, True),
    (DCGM_A, C_TEST, False),
    (DCGM_A, P_A, True),  # through exported_namespace
    (DCGM_A, P_B, False),
    (DCGM_A, P_A_TEST, False),  # right project, wrong cluster
    (DCGM_A, P_OPERATOR, True),  # through namespace: the exporter namespace sees every tenant
    (DCGM_IDLE, P_A, False),
    (DCGM_IDLE, P_OPERATOR, True),
    (DCGM_IDLE, C_PROD, True),
    (SPOOF, P_B, True),  # any project label grants
    (SPOOF, P_C, True),
    (SPOOF, P_A, False),
    (POD_A, P_A, True),
    (POD_A, P_A_TEST, False),
    (POD_A_TEST, P_A_TEST, True),
    (POD_A_TEST, C_PROD, False),
    (CLUSTER_ONLY, HUB, True),
    (CLUSTER_ONLY, C_PROD, True),
    (CLUSTER_ONLY, P_A, False),  # cluster but no project label: cluster-wide holders only
    (CLUSTER_ONLY, C_TEST, False),
    (NO_CLUSTER, HUB, True),
    (NO_CLUSTER, C_PROD, False),  # no cluster label: hub-wide holders only
    (NO_CLUSTER, P_A, False),
    (EMPTY_CLUSTER, P_A, False),  # an empty value is an absent label
    (EMPTY_CLUSTER, HUB, True),
    (DCGM_A, Grant(clusters={TEST}, projects={PROD: {"team-a"}}), True),
    (POD_A_TEST, Grant(clusters={TEST}, projects={PROD: {"team-a"}}), True),
    (SPOOF, Grant(clusters={TEST}, projects={PROD: {"team-a"}}), False),
]


@pytest.mark.parametrize(
    ("labels", "grant", "expected"),
    TABLE,
    ids=[f"{i}-{g.slug()}" for i, (_, g, _) in enumerate(TABLE)],
)
def test_visibility_table(labels: dict[str, str], grant: Grant, expected: bool) -> None:
    """docs/authorization.md: each label set is visible exactly to the grants the rule names."""
    assert visible(labels, grant) is expected


def test_custom_label_model() -> None:
    """A different cluster label and project-label list change which labels are read."""
    labels = {"__name__": "m", "k8s_cluster": PROD, "project": "team-a", "namespace": "team-b"}
    assert visible(labels, P_A, cluster_label="k8s_cluster", project_labels=("project",))
    assert not visible(labels, P_B, cluster_label="k8s_cluster", project_labels=("project",))
    assert not visible(labels, P_A)  # default model: no `cluster` label at all


def test_project_label_metrics_trust_limit() -> None:
    """PROXY_PROJECT_LABEL_METRICS: a secondary label grants only for the metrics it is trusted on."""
    limits = {"exported_namespace": "DCGM_.*"}
    assert visible(DCGM_A, P_A, project_label_metrics=limits)
    spoofed_pod = {
        "__name__": "kube_pod_info",
        "cluster": PROD,
        "namespace": "team-b",
        "exported_namespace": "team-a",
    }
    assert visible(spoofed_pod, P_A)
    assert not visible(spoofed_pod, P_A, project_label_metrics=limits)
    assert visible(spoofed_pod, P_B, project_label_metrics=limits)


def test_grant_is_a_canonical_hashable_key() -> None:
    """Grants built from sets or frozensets in any order are equal and hash alike; empties drop."""
    g1 = Grant(clusters={"b", "a"}, projects={PROD: {"y", "x"}, TEST: set()})
    g2 = Grant(clusters=frozenset({"a", "b"}), projects={PROD: frozenset({"x", "y"})})
    assert g1 == g2
    assert hash(g1) == hash(g2)
    assert len({g1, g2}) == 1
    assert g1 != Grant(clusters={"a"})
    assert Grant.nothing().slug() == "nothing"


def _vector(*items: tuple[dict[str, str], str], t: float = 100.0) -> dict[str, object]:
    return {"resultType": "vector", "result": [{"metric": m, "value": [t, v]} for m, v in items]}


def test_diff_ignores_order_and_tolerates_float_noise() -> None:
    """Order does not matter and values within tolerance (and NaN vs NaN) are equal."""
    a = _vector(({"a": "1"}, "1.0000000000001"), ({"a": "2"}, "NaN"))
    b = _vector(({"a": "2"}, "NaN"), ({"a": "1"}, "1"))
    assert diff_results(a, {"status": "success", "data": b}) == []
    assert_same_result(a, b)


def test_diff_reports_missing_extra_and_changed_series() -> None:
    """Extra, missing and different series, other timestamps and ±Inf mismatches are reported."""
    a = _vector(({"a": "1"}, "1"), ({"a": "3"}, "+Inf"), ({"a": "4"}, "5"))
    b = _vector(({"a": "2"}, "1"), ({"a": "3"}, "-Inf"), ({"a": "4"}, "5.1"))
    diffs = diff_results(a, b)
    assert any("only in actual" in d for d in diffs)
    assert any("only in expected" in d for d in diffs)
    assert len(diffs) == 4
    assert diff_results(_vector(({"a": "1"}, "1"), t=1), _vector(({"a": "1"}, "1"), t=2))
    with pytest.raises(AssertionError, match="difference"):
        assert_same_result(a, b)


def test_diff_compares_names_unless_told() -> None:
    """`__name__` counts by default; `ignore_name` drops it on both sides."""
    a = _vector(({"__name__": "m", "a": "1"}, "1"))
    b = _vector(({"a": "1"}, "1"))
    assert diff_results(a, b)
    assert diff_results(a, b, ignore_name=True) == []


def test_diff_matrices_scalars_and_types() -> None:
    """Matrices compare point by point; scalars by value; differing result types differ."""
    m1 = {"resultType": "matrix", "result": [{"metric": {"a": "1"}, "values": [[1, "1"], [2, "2"]]}]}
    m2 = {"resultType": "matrix", "result": [{"metric": {"a": "1"}, "values": [[1, "1"], [2, "3"]]}]}
    assert diff_results(m1, m1) == []
    assert diff_results(m1, m2)
    assert (
        diff_results(
            {"resultType": "scalar", "result": [1, "2"]}, {"resultType": "scalar", "result": [1, "2.0"]}
        )
        == []
    )
    assert diff_results(m1, _vector())


def test_filter_and_leak_helpers() -> None:
    """Leak helpers flag exactly the invisible series, values and names."""
    answer = _vector((DCGM_A, "1"), (DCGM_IDLE, "0"), (NO_CLUSTER, "3"))
    kept = filter_visible(answer, P_A)
    assert [r["metric"] for r in kept["result"]] == [DCGM_A]
    assert leaked_series([DCGM_A, DCGM_IDLE, SPOOF], P_A) == [DCGM_IDLE, SPOOF]
    assert leaked_label_values("exported_namespace", ["team-a", "team-c"], [DCGM_A]) == {"team-c"}
    assert leaked_label_names(["cluster", "pod"], [DCGM_A]) == {"pod"}
