"""What narrowing left out, as Prometheus `warnings` text (docs/authorization.md#saying-what-was-left-out).

Only names the query itself wrote and names the caller holds appear: never whether anything else
exists. An unscoped selector narrowed to the holdings is the normal case and yields nothing.
"""

from __future__ import annotations

from proxy.promql.policy import Held
from proxy.promql.scope import LabelModel
from proxy.promql.selectors import SelectorReach

MAX_WARNINGS = 8


def _named_projects(sel: SelectorReach) -> frozenset[str]:
    named: set[str] = set()
    for values in sel.projects:
        if values is not None:
            named |= values - {""}
    return frozenset(named)


def left_out(sel: SelectorReach, held: Held, model: LabelModel) -> str | None:
    """The warning for one narrowed selector, or None when it named nothing that was dropped."""
    if held.hub_wide:
        return None
    named_clusters = None if sel.clusters is None else sel.clusters - {""}
    held_clusters = held.cluster_names()
    dropped: list[str] = []
    if named_clusters:
        dropped += [f"{model.cluster_label} {c}" for c in sorted(named_clusters - held_clusters)]
        candidates = named_clusters & held_clusters
    else:
        candidates = held_clusters
    named = _named_projects(sel)
    covered: list[str] = []
    for cluster in sorted(candidates):
        if cluster in held.whole:
            covered.append(f"{model.cluster_label} {cluster}")
            continue
        mine = held.projects.get(cluster, frozenset())
        if named:
            dropped += [f"{p} on {cluster}" for p in sorted(named - mine)]
            shown = named & mine
        else:
            shown = mine
            if named_clusters:
                dropped.append(f"the other namespaces of {cluster}")
        if shown:
            covered.append(", ".join(sorted(shown)) + f" on {cluster}")
    if not dropped:
        return None
    verb = "is" if len(dropped) == 1 and not dropped[0].startswith("the other") else "are"
    return f"{'; '.join(dropped)} {verb} not among your grants; results cover {' and '.join(covered)}"


def warnings_for(selectors: list[SelectorReach], held: Held, model: LabelModel) -> tuple[str, ...]:
    """Distinct warnings of narrowed selectors, at most MAX_WARNINGS."""
    out: list[str] = []
    for sel in selectors:
        text = left_out(sel, held, model)
        if text is not None and text not in out:
            out.append(text)
    return tuple(out[:MAX_WARNINGS])
