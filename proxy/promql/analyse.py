"""Guard → parse → analyse: which clusters and projects a query (or match[] list) can reach."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from proxy.promql import nodes as n
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

    @property
    def has_selectors(self) -> bool:
        """True when the query reads any series at all."""
        return bool(self.selectors)

    def reach(self) -> Reach:
        """Union of finite cluster/project values; unbounded if any selector's clusters are."""
        bounded = True
        clusters: set[str] = set()
        projects: dict[str, set[str]] = {}
        for sel in self.selectors:
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


def analyse_query(query: str, limits: Limits, model: LabelModel) -> Analysis:
    """Guard, parse and analyse a PromQL query; raises QueryLimitError / QuerySyntaxError."""
    tree = parse(query, limits)
    reaches = tuple(reach_of(vs, model) for vs in iter_selectors(tree))
    return Analysis("query", (tree,), reaches, model, limits)


def analyse_selectors(matches: Sequence[str], limits: Limits, model: LabelModel) -> Analysis:
    """Guard, parse and analyse a match[] list; each entry must be a plain series selector."""
    if isinstance(matches, str):
        raise TypeError("matches must be a sequence of selector strings")
    trees: list[n.Expr] = []
    for text in matches:
        tree = parse(text, limits)
        if not isinstance(tree, n.VectorSelector):
            raise QuerySyntaxError(f"match[] entry is not a series selector: {text[:100]!r}")
        trees.append(tree)
    reaches = tuple(reach_of(t, model) for t in trees if isinstance(t, n.VectorSelector))
    return Analysis("selectors", tuple(trees), reaches, model, limits)
