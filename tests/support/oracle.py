"""The no-leak oracle: the visibility rule of docs/authorization.md, written independently of `proxy.promql`.

Deliberately naive (a direct reading of docs/authorization.md sentence by sentence) so that a bug in the
proxy's engine is not mirrored here. Also: comparison of Prometheus answers, and leak checks for
the label/series endpoints.

Comparison rules (`diff_results`):
- result order is ignored (vectors/matrices are matched by their full label set);
- sample values compare with `math.isclose` (default rel 1e-9, abs 1e-9), `NaN` equals `NaN`,
  `±Inf` only the same infinity; timestamps must be identical (send both queries the same
  explicit `time`/`start`/`end`/`step`);
- labels compare exactly, `__name__` included. `ignore_name=True` drops `__name__` on both
  sides first; the narrowing forms docs/authorization.md allows (unions of copies of a selector, or of a
  per-series range function applied to copies) keep every output label, so for proxy-vs-oracle
  checks a `__name__` difference is a real bug and the switch stays off. It exists only for
  comparing two *different* query texts that are equivalent apart from name dropping
  (e.g. `m * 1` written against `m`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from proxy_demo.dataset import Series

DEFAULT_CLUSTER_LABEL = "cluster"
DEFAULT_PROJECT_LABELS = ("namespace", "exported_namespace")


@dataclass(frozen=True, eq=False)
class Grant:
    """What an identity holds on the hub: everything, whole clusters, or projects per cluster."""

    hub_wide: bool = False
    # any set/mapping is accepted; __post_init__ stores frozensets in a read-only mapping
    clusters: AbstractSet[str] = frozenset()
    projects: Mapping[str, AbstractSet[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # accept plain sets/dicts from tests; store a canonical, immutable form for hashing
        object.__setattr__(self, "clusters", frozenset(self.clusters))
        object.__setattr__(
            self,
            "projects",
            MappingProxyType({c: frozenset(ps) for c, ps in sorted(self.projects.items()) if ps}),
        )

    def key(self) -> tuple[bool, tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]:
        """Canonical tuple form (equal grants, equal keys)."""
        return (
            self.hub_wide,
            tuple(sorted(self.clusters)),
            tuple((c, tuple(sorted(ps))) for c, ps in sorted(self.projects.items())),
        )

    def __hash__(self) -> int:
        """Hash of `key()`, so grants key caches."""
        return hash(self.key())

    def __eq__(self, other: object) -> bool:
        """Equal when `key()`s are equal."""
        return isinstance(other, Grant) and self.key() == other.key()

    def slug(self) -> str:
        """A short file-system-safe name (for work directories and test ids)."""
        if self.hub_wide:
            return "hub"
        parts = [f"C-{c}" for c in sorted(self.clusters)]
        parts += [f"P-{c}-{'+'.join(sorted(ps))}" for c, ps in sorted(self.projects.items())]
        return "_".join(parts) or "nothing"

    @classmethod
    def hub(cls) -> Grant:
        """`HUB` or `HUB-<hub>`: everything."""
        return cls(hub_wide=True)

    @classmethod
    def nothing(cls) -> Grant:
        """No resource at all."""
        return cls()

    @classmethod
    def of_clusters(cls, *clusters: str) -> Grant:
        """`CLUSTER-c` for each given cluster."""
        return cls(clusters=frozenset(clusters))

    @classmethod
    def of_projects(cls, cluster: str, *projects: str) -> Grant:
        """`PROJECT-p` of one cluster for each given project."""
        return cls(projects={cluster: frozenset(projects)})


def visible(
    labels: Mapping[str, str],
    grant: Grant,
    cluster_label: str = DEFAULT_CLUSTER_LABEL,
    project_labels: Sequence[str] = DEFAULT_PROJECT_LABELS,
    project_label_metrics: Mapping[str, str] | None = None,
) -> bool:
    """docs/authorization.md: may a caller holding `grant` see a series with these labels?

    `project_label_metrics` (PROXY_PROJECT_LABEL_METRICS) maps a project label to a fully
    anchored metric-name regex; that label then counts only for matching metric names.
    """
    if grant.hub_wide:
        return True
    # Prometheus has no empty label values: "" and absent are the same thing
    cluster = labels.get(cluster_label, "")
    if not cluster:
        return False
    if cluster in grant.clusters:
        return True
    held = grant.projects.get(cluster, frozenset())
    name = labels.get("__name__", "")
    for label in project_labels:
        project = labels.get(label, "")
        if not project:
            continue
        trusted_for = (project_label_metrics or {}).get(label)
        if trusted_for is not None and re.fullmatch(trusted_for, name) is None:
            continue  # this label is not trusted to name the project of this metric
        if project in held:
            return True
    return False


def visible_series(
    series: Iterable[Series],
    grant: Grant,
    cluster_label: str = DEFAULT_CLUSTER_LABEL,
    project_labels: Sequence[str] = DEFAULT_PROJECT_LABELS,
    project_label_metrics: Mapping[str, str] | None = None,
) -> list[Series]:
    """The series of `series` that `grant` may see."""
    return [
        s for s in series if visible(s.labels, grant, cluster_label, project_labels, project_label_metrics)
    ]


# ---------------------------------------------------------------------------- comparisons


def _data(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    # accept either a whole envelope or its `data`
    if "status" in answer:
        if answer["status"] != "success":
            raise AssertionError(f"not a success answer: {answer}")
        data: Mapping[str, Any] = answer["data"]
        return data
    return answer


def _metric_key(metric: Mapping[str, str], ignore_name: bool) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in metric.items() if not (ignore_name and k == "__name__")))


def _same_value(a: str, b: str, rel_tol: float, abs_tol: float) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return math.isclose(x, y, rel_tol=rel_tol, abs_tol=abs_tol)


def _same_point(p: Sequence[Any], q: Sequence[Any], rel_tol: float, abs_tol: float) -> bool:
    return float(p[0]) == float(q[0]) and _same_value(str(p[1]), str(q[1]), rel_tol, abs_tol)


def diff_results(
    actual: Mapping[str, Any],
    expected: Mapping[str, Any],
    *,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
    ignore_name: bool = False,
) -> list[str]:
    """Differences between two query answers (envelopes or `data`); empty when they agree."""
    a, e = _data(actual), _data(expected)
    if a.get("resultType") != e.get("resultType"):
        return [f"resultType {a.get('resultType')!r} != {e.get('resultType')!r}"]
    kind = a["resultType"]
    if kind in ("scalar", "string"):
        pa, pe = a["result"], e["result"]
        same = _same_point(pa, pe, rel_tol, abs_tol) if kind == "scalar" else list(pa) == list(pe)
        return [] if same else [f"{kind} {pa!r} != {pe!r}"]
    field_name = "value" if kind == "vector" else "values"
    out: list[str] = []
    maps: list[dict[tuple[tuple[str, str], ...], Any]] = []
    for side, doc in (("actual", a), ("expected", e)):
        m: dict[tuple[tuple[str, str], ...], Any] = {}
        for item in doc["result"]:
            k = _metric_key(item["metric"], ignore_name)
            if k in m:
                out.append(f"{side}: duplicate label set {dict(k)}")
            m[k] = item.get(field_name)
        maps.append(m)
    ma, me = maps
    for k in sorted(ma.keys() - me.keys()):
        out.append(f"only in actual: {dict(k)}")
    for k in sorted(me.keys() - ma.keys()):
        out.append(f"only in expected: {dict(k)}")
    for k in sorted(ma.keys() & me.keys()):
        va, ve = ma[k], me[k]
        if kind == "vector":
            if not _same_point(va, ve, rel_tol, abs_tol):
                out.append(f"{dict(k)}: {va!r} != {ve!r}")
        elif len(va) != len(ve) or not all(
            _same_point(p, q, rel_tol, abs_tol) for p, q in zip(va, ve, strict=True)
        ):
            out.append(
                f"{dict(k)}: {len(va)} points vs {len(ve)}, first differences: "
                f"{[(p, q) for p, q in zip(va, ve, strict=False) if p != q][:3]}"
            )
    return out


def assert_same_result(
    actual: Mapping[str, Any],
    expected: Mapping[str, Any],
    *,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
    ignore_name: bool = False,
) -> None:
    """Raise AssertionError listing the differences when two query answers disagree."""
    diffs = diff_results(actual, expected, rel_tol=rel_tol, abs_tol=abs_tol, ignore_name=ignore_name)
    if diffs:
        shown = "\n  ".join(diffs[:20])
        raise AssertionError(f"{len(diffs)} difference(s):\n  {shown}")


def filter_visible(
    answer: Mapping[str, Any],
    grant: Grant,
    cluster_label: str = DEFAULT_CLUSTER_LABEL,
    project_labels: Sequence[str] = DEFAULT_PROJECT_LABELS,
) -> dict[str, Any]:
    """A vector/matrix answer keeping only result series whose labels `grant` may see.

    Exact only for queries that return stored series unchanged (plain selectors), where a
    result's labels are the stored series' labels.
    """
    data = _data(answer)
    return {
        "resultType": data["resultType"],
        "result": [r for r in data["result"] if visible(r["metric"], grant, cluster_label, project_labels)],
    }


def leaked_series(
    label_sets: Iterable[Mapping[str, str]],
    grant: Grant,
    cluster_label: str = DEFAULT_CLUSTER_LABEL,
    project_labels: Sequence[str] = DEFAULT_PROJECT_LABELS,
    project_label_metrics: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """Label sets (e.g. an `/api/v1/series` answer) that `grant` may not see."""
    return [
        dict(ls)
        for ls in label_sets
        if not visible(ls, grant, cluster_label, project_labels, project_label_metrics)
    ]


def leaked_label_values(
    name: str, values: Iterable[str], visible_label_sets: Iterable[Mapping[str, str]]
) -> set[str]:
    """Values of label `name` that occur on none of the visible series (docs/testing.md)."""
    seen = {ls[name] for ls in visible_label_sets if name in ls}
    return set(values) - seen


def leaked_label_names(names: Iterable[str], visible_label_sets: Iterable[Mapping[str, str]]) -> set[str]:
    """Label names (an `/api/v1/labels` answer) that occur on none of the visible series."""
    seen = {k for ls in visible_label_sets for k in ls}
    return set(names) - seen
