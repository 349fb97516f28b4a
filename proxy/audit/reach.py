"""The reach recorded in an audit event: what the forwarded request can touch, given the query's
selectors and the holdings the proxy confined (or narrowed) them to."""

from __future__ import annotations

from collections.abc import Iterable

from proxy.audit.event import Reach
from proxy.promql.scope import Holdings
from proxy.promql.selectors import SelectorReach


def forwarded_reach(selectors: Iterable[SelectorReach], held: Holdings) -> Reach:
    """Per selector: named clusters/projects as named; an unnamed side narrowed to the holdings.

    A selector without a finite cluster set reaches the caller's holdings (all of the hub for a
    hub-wide holder); one naming clusters but no project reaches those clusters whole when held
    whole, else the held projects there; one naming projects reaches exactly those.
    """
    hub_wide = False
    clusters: set[str] = set()
    projects: dict[str, set[str]] = {}
    for sel in selectors:
        if sel.clusters is None or "" in sel.clusters:
            if held.hub_wide:
                hub_wide = True
                continue
            clusters |= held.clusters
            for cluster, names in held.projects.items():
                projects.setdefault(cluster, set()).update(names)
            continue
        finite = [p for p in sel.projects if p is not None]
        values: set[str] | None = set().union(*finite) if finite else None
        if values is not None and "" in values:
            values = None  # reaches series lacking the label: the whole cluster
        for cluster in sel.clusters:
            if values is not None:
                projects.setdefault(cluster, set()).update(values)
            elif held.holds_cluster(cluster):
                clusters.add(cluster)
            else:
                projects.setdefault(cluster, set()).update(held.projects.get(cluster, frozenset()))
    if hub_wide:
        return Reach(hub_wide=True)
    return Reach(
        clusters=tuple(sorted(clusters)),
        projects={c: tuple(sorted(p)) for c, p in projects.items() if p and c not in clusters},
    )
