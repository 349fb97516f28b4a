"""Guard → parse → analyse: which clusters and projects a query (or match[] list) can reach."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from proxy.promql import nodes as n
from proxy.promql.cache import BoundedLRU
from proxy.promql.errors import QuerySyntaxError
from proxy.promql.limits import Limits
from proxy.promql.parse import parse
from proxy.promql.scope import LabelModel
from proxy.promql.selectors import SelectorReach, iter_selectors, reach_of


@dataclass(frozen=True, slots=True)
class Reach:
    """What Keycloak must be asked about for an analysed query."""

    bounded: bool
    clusters: frozenset[str]
    projects: Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class Analysis:
    """A parsed query (one tree) or match[] list (one selector tree each) and its selectors."""

    kind: Literal["query", "selectors"]
    trees: tuple[n.Expr, ...]
    selectors: tuple[SelectorReach, ...]
    model: LabelModel
    limits: Limits
    # identity of the inputs (kind, texts, limits, model) for caches keyed by analysis
    key: Hashable | None = field(default=None, compare=False, repr=False)
    # computed once with the analysis (analyses are cached and shared by repeated requests)
    _reach: Reach = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_reach", reach_of_selectors(self.selectors))

    @property
    def has_selectors(self) -> bool:
        """True when the query reads any series at all."""
        return bool(self.selectors)

    def reach(self) -> Reach:
        """Union of finite cluster/project values; unbounded if any selector's clusters are."""
        return self._reach


def reach_of_selectors(selectors: Sequence[SelectorReach]) -> Reach:
    """Union of the selectors' finite cluster/project values; unbounded if any selector's are."""
    bounded = True
    clusters: set[str] = set()
    projects: dict[str, set[str]] = {}
    for sel in selectors:
        if sel.clusters is None or "" in sel.clusters:
            bounded = False
            continue
        clusters |= sel.clusters
        values = set().union(*(p for p in sel.projects if p is not None)) - {""}
        for cluster in sel.clusters:
            projects.setdefault(cluster, set()).update(values)
    return Reach(
        bounded,
        frozenset(clusters),
        MappingProxyType({c: frozenset(v) for c, v in projects.items()}),
    )


# Whole guard+parse+analyse results by (kind, text(s), limits, model): Grafana re-sends the same
# panel texts on every refresh. Bounded by entries and by query bytes (trees grow with the text).
ANALYSIS_CACHE: BoundedLRU[Analysis] = BoundedLRU(max_entries=4096, max_weight=4 << 20)
_ENTRY_OVERHEAD = 256


def model_key(model: LabelModel) -> Hashable:
    """A hashable identity of `model` (its trust map may be a plain dict)."""
    return (
        model.cluster_label,
        tuple(model.project_labels),
        tuple(sorted(model.project_label_metrics.items())),
    )


def analyse_query(query: str, limits: Limits, model: LabelModel) -> Analysis:
    """Guard, parse and analyse a PromQL query; raises QueryLimitError / QuerySyntaxError."""
    key = ("query", query, limits, model_key(model))
    cached = ANALYSIS_CACHE.get(key)
    if cached is not None:
        return cached
    tree = parse(query, limits)
    reaches = tuple(reach_of(vs, model) for vs in iter_selectors(tree))
    analysis = Analysis("query", (tree,), reaches, model, limits, key)
    ANALYSIS_CACHE.put(key, analysis, len(query) + _ENTRY_OVERHEAD)
    return analysis


def analyse_selectors(matches: Sequence[str], limits: Limits, model: LabelModel) -> Analysis:
    """Guard, parse and analyse a match[] list; each entry must be a plain series selector."""
    if isinstance(matches, str):
        raise TypeError("matches must be a sequence of selector strings")
    texts = tuple(matches)
    key = ("selectors", texts, limits, model_key(model))
    cached = ANALYSIS_CACHE.get(key)
    if cached is not None:
        return cached
    trees: list[n.Expr] = []
    for text in texts:
        tree = parse(text, limits)
        if not isinstance(tree, n.VectorSelector):
            raise QuerySyntaxError(f"match[] entry is not a series selector: {text[:100]!r}")
        trees.append(tree)
    reaches = tuple(reach_of(t, model) for t in trees if isinstance(t, n.VectorSelector))
    analysis = Analysis("selectors", tuple(trees), reaches, model, limits, key)
    weight = sum(len(t) for t in texts) + _ENTRY_OVERHEAD * max(1, len(texts))
    ANALYSIS_CACHE.put(key, analysis, weight)
    return analysis
