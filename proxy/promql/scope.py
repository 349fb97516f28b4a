"""What a caller holds on the hub, and the label model the holdings are read through.

Pure data: no Keycloak, no HTTP. The authz layer builds a `Holdings` from Keycloak's answer;
the PromQL engine reads it to decide and rewrite.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def _frozen_map(m: Mapping[str, frozenset[str]]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType({k: frozenset(v) for k, v in m.items() if v})


@dataclass(frozen=True)
class LabelModel:
    """Which series labels name the cluster and the project, and optional trust limits."""

    cluster_label: str = "cluster"
    project_labels: tuple[str, ...] = ("namespace", "exported_namespace")
    # project label -> metric-name regex (RE2, fully anchored) it is trusted for; a label
    # absent from this map is trusted for every metric (docs/authorization.md: PROXY_PROJECT_LABEL_METRICS).
    project_label_metrics: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Holdings:
    """The GET resources a caller holds on one hub, as clusters and projects."""

    hub_wide: bool = False
    clusters: frozenset[str] = frozenset()
    # cluster -> projects held there (PROJECT resources); clusters held whole are in `clusters`
    projects: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clusters", frozenset(self.clusters))
        object.__setattr__(self, "projects", _frozen_map(self.projects))

    def __hash__(self) -> int:
        """Hash of the holdings' contents, so equal holdings share cache entries."""
        return hash((self.hub_wide, self.clusters, frozenset(self.projects.items())))

    def holds_anything(self) -> bool:
        """True when the caller holds at least one GET resource on this hub."""
        return self.hub_wide or bool(self.clusters) or any(self.projects.values())

    def holds_cluster(self, cluster: str) -> bool:
        """True when every namespace of `cluster` is visible to the caller."""
        return self.hub_wide or cluster in self.clusters

    def holds_project(self, cluster: str, project: str) -> bool:
        """True when namespace `project` of `cluster` is visible to the caller."""
        return self.holds_cluster(cluster) or project in self.projects.get(cluster, frozenset())

    @classmethod
    def nothing(cls) -> Holdings:
        """Holdings of a caller who holds no resource at all."""
        return cls()

    @classmethod
    def everything(cls) -> Holdings:
        """Holdings of a hub-wide holder."""
        return cls(hub_wide=True)


def labels_visible(labels: Mapping[str, str], holdings: Holdings, model: LabelModel) -> bool:
    """docs/authorization.md visibility of one label set (a series, an alert, a rule) to a caller."""
    if holdings.hub_wide:
        return True
    cluster = labels.get(model.cluster_label, "")
    if not cluster:
        return False
    if cluster in holdings.clusters:
        return True
    held = holdings.projects.get(cluster, frozenset())
    name = labels.get("__name__", "")
    for label in model.project_labels:
        value = labels.get(label, "")
        if value and value in held and _trusted(model, label, name):
            return True
    return False


def _trusted(model: LabelModel, label: str, metric: str) -> bool:
    """Whether a secondary project label counts for this metric name (trust limits)."""
    pattern = model.project_label_metrics.get(label)
    if pattern is None:
        return True
    return re.fullmatch(pattern, metric) is not None
