"""Per-selector decisions (docs/authorization.md): granted, refused, or narrowed to branches.

A plan is a tuple of branches; each branch is the tuple of matchers to add to a copy of the
selector. One branch means "add these matchers"; several mean a union of copies. Added matchers
are generated from the caller's holdings only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from proxy.naming import is_safe
from proxy.promql import nodes as n
from proxy.promql.errors import AccessDenied, NarrowingImpossible
from proxy.promql.printer import to_text
from proxy.promql.regex import literal_alternation_text
from proxy.promql.scope import Holdings, LabelModel
from proxy.promql.selectors import (
    NAME_LABEL,
    SelectorReach,
    label_trusted,
    matchers_on,
    not_refused,
    trust_pattern,
    value_set,
)
from proxy.promql.strings import quote

Mode = Literal["narrow", "deny"]
Branch = tuple[n.Matcher, ...]
Plan = tuple[Branch, ...]

MAX_BRANCHES = 32


@dataclass(frozen=True, slots=True)
class Held:
    """Holdings reduced to safe names: clusters held whole and cluster -> projects."""

    hub_wide: bool
    whole: frozenset[str]
    projects: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, holdings: Holdings) -> Held:
        """Filter `holdings` to safe names; projects of clusters held whole are dropped.

        Names outside Kubernetes' name syntax name nothing anyone holds (docs/authorization.md).
        """
        whole = frozenset(c for c in holdings.clusters if is_safe(c))
        projects = {}
        for cluster, names in holdings.projects.items():
            if cluster in whole or not is_safe(cluster):
                continue
            safe = frozenset(p for p in names if is_safe(p))
            if safe:
                projects[cluster] = safe
        return cls(holdings.hub_wide, whole, projects)

    def anything(self) -> bool:
        """True when any resource is held."""
        return self.hub_wide or bool(self.whole) or bool(self.projects)

    def cluster_names(self) -> frozenset[str]:
        """Clusters on which anything is held."""
        return self.whole | frozenset(self.projects)

    def project_names(self) -> frozenset[str]:
        """Projects held on any cluster."""
        return frozenset().union(*self.projects.values())


def set_matcher(label: str, values: frozenset[str] | set[str]) -> n.Matcher:
    """`label="v"` for one value, else `label=~"v1|v2"` with RE2-quoted literals."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return n.Matcher("=", label, ordered[0])
    return n.Matcher("=~", label, literal_alternation_text(ordered))


def _granting_label(sel: SelectorReach, cluster: str, held: Held, model: LabelModel) -> str | None:
    """The first project label through which every reachable project of `cluster` is held."""
    projects = held.projects.get(cluster, frozenset())
    for label, values in zip(model.project_labels, sel.projects, strict=True):
        if not values or "" in values or not label_trusted(sel.selector, label, model):
            continue
        if values <= projects:
            return label
    return None


def granted_plan(sel: SelectorReach, held: Held, model: LabelModel) -> Plan | None:
    """The single branch for a selector the holdings fully grant, or None if not granted."""
    if held.hub_wide:
        return ((),)
    clusters = sel.clusters
    if not clusters or "" in clusters:
        return None
    by_label: dict[str, set[str]] = {}
    for cluster in clusters:
        if cluster in held.whole:
            continue
        label = _granting_label(sel, cluster, held, model)
        if label is None:
            return None
        index = model.project_labels.index(label)
        values = sel.projects[index]
        assert values is not None
        by_label.setdefault(label, set()).update(held.projects[cluster] & values)
    known = held.cluster_names()
    added = [set_matcher(model.cluster_label, {c for c in known if c in clusters})]
    added += [set_matcher(label, values) for label, values in by_label.items()]
    return (_without_present(sel.selector, tuple(added)),)


def _without_present(vs: n.VectorSelector, added: Branch) -> Branch:
    """Drop added equality matchers the selector already carries identically."""
    return tuple(m for m in added if not (m.op == "=" and m in matchers_on(vs, m.name)))


def _filter(vs: n.VectorSelector, label: str, values: frozenset[str]) -> frozenset[str]:
    """Values of `label` the selector's own matchers do not exclude for certain."""
    return not_refused(matchers_on(vs, label), values)


def _names_excluded(vs: n.VectorSelector, regex: str) -> bool:
    """True when the selector's metric names are finite and none is trusted by `regex`."""
    names = value_set(vs, NAME_LABEL)
    pattern = trust_pattern(regex)
    if pattern is None:
        return True  # an unreadable trust regex trusts nothing (fail closed)
    return names is not None and not any(pattern.fullmatch(name) for name in names)


def narrowed_plan(sel: SelectorReach, held: Held, model: LabelModel) -> Plan:
    """Branches restricting a selector to what the caller holds (docs/authorization.md#deny-and-narrow)."""
    vs = sel.selector
    _refuse_explicit_foreign(sel, held, model)
    branches: list[Branch] = []
    whole = _filter(vs, model.cluster_label, held.whole)
    if whole:
        branches.append((set_matcher(model.cluster_label, whole),))
    groups: dict[tuple[str, frozenset[str]], set[str]] = {}
    reachable = _filter(vs, model.cluster_label, frozenset(held.projects))
    for cluster in sorted(reachable):
        for label in model.project_labels:
            regex = model.project_label_metrics.get(label)
            if regex is not None and _names_excluded(vs, regex):
                continue
            projects = _filter(vs, label, held.projects[cluster])
            if projects:
                groups.setdefault((label, projects), set()).add(cluster)
    ordered = sorted(groups.items(), key=lambda kv: _group_key(kv[0], model))
    for (label, projects), clusters in ordered:
        added = [set_matcher(model.cluster_label, clusters), set_matcher(label, projects)]
        regex = model.project_label_metrics.get(label)
        if regex is not None and not label_trusted(vs, label, model):
            added.append(n.Matcher("=~", NAME_LABEL, regex))
        branches.append(tuple(added))
    if not branches:
        raise AccessDenied(f"{to_text(vs)} selects no series you may see")
    if len(branches) > MAX_BRANCHES:
        raise NarrowingImpossible(
            f"{to_text(vs)} would need {len(branches)} branches to narrow (the proxy's bound is "
            f"{MAX_BRANCHES}); " + guidance(model, vs)
        )
    return tuple(_without_present(vs, b) for b in branches)


def _group_key(key: tuple[str, frozenset[str]], model: LabelModel) -> tuple[int, list[str]]:
    # branches follow PROXY_PROJECT_LABELS precedence, then a stable order of project sets
    return model.project_labels.index(key[0]), sorted(key[1])


def _refuse_explicit_foreign(sel: SelectorReach, held: Held, model: LabelModel) -> None:
    """A selector naming only clusters/projects the caller does not hold is refused outright."""
    text = to_text(sel.selector)
    if sel.clusters is not None:
        named = sel.clusters - {""}
        if not sel.clusters:
            raise AccessDenied(f"{text} has contradictory {model.cluster_label} matchers")
        if not named:
            raise AccessDenied(f"{text} reaches series without a {model.cluster_label} label")
        if not named & held.cluster_names():
            raise AccessDenied(f"{text}: no access to {_names(model.cluster_label, named)}")
        candidates = named & held.cluster_names()
    else:
        candidates = held.cluster_names()
    if candidates & held.whole:
        return
    for label, values in zip(model.project_labels, sel.projects, strict=True):
        if values is None or not values - {""}:
            continue
        if not any(values & held.projects.get(c, frozenset()) for c in candidates):
            raise AccessDenied(f"{text}: no access to {_names(label, values - {''})}")


def _names(label: str, values: frozenset[str]) -> str:
    return f"{label} " + ", ".join(quote(v) for v in sorted(values))


def hint_labels(vs: n.VectorSelector | None, model: LabelModel) -> tuple[str, ...]:
    """The project labels that apply to `vs`'s metric, for hints (PROXY_PROJECT_LABEL_METRICS).

    A label whose trust limit (PROXY_PROJECT_LABEL_METRICS) covers every metric name the selector
    can read is the specific one (`exported_namespace` for `DCGM_*`); otherwise every label that
    may grant for it, in PROXY_PROJECT_LABELS order.
    """
    names = value_set(vs, NAME_LABEL) if vs is not None else None
    specific: list[str] = []
    general: list[str] = []
    for label in model.project_labels:
        regex = model.project_label_metrics.get(label)
        if regex is None:
            general.append(label)
        elif names and _all_trusted(names, trust_pattern(regex)):
            specific.append(label)
    return tuple(specific or general or model.project_labels[:1] or ("namespace",))


def _all_trusted(names: frozenset[str], pattern: re.Pattern[str] | None) -> bool:
    return pattern is not None and all(pattern.fullmatch(name) for name in names)


def _project_hint(vs: n.VectorSelector | None, model: LabelModel) -> str:
    return " or ".join(f'{label}="<namespace>"' for label in hint_labels(vs, model))


def guidance(model: LabelModel, vs: n.VectorSelector | None = None) -> str:
    """How the caller can scope a selector: an explicit cluster and project matcher."""
    return (
        f'add an explicit {model.cluster_label}="<cluster>" matcher (and {_project_hint(vs, model)} '
        "if you hold only namespaces there) to the selector"
    )


def denied_message(sel: SelectorReach, held: Held, model: LabelModel) -> str:
    """Why a selector is not granted, naming only what the query itself names."""
    text = to_text(sel.selector)
    if not held.anything():
        return "you hold no access on this hub"
    if sel.clusters is None:
        return (
            f"{text} is not limited to a {model.cluster_label}: access to every cluster "
            f"would be needed; " + guidance(model, sel.selector)
        )
    if not sel.clusters:
        return f"{text} has contradictory {model.cluster_label} matchers"
    if "" in sel.clusters:
        return f"{text} reaches series without a {model.cluster_label} label (hub-wide access)"
    missing = []
    named = [
        (label, values - {""})
        for label, values in zip(model.project_labels, sel.projects, strict=True)
        if values and values - {""}
    ]
    partly_held = False
    for cluster in sorted(sel.clusters):
        if cluster in held.whole or _granting_label(sel, cluster, held, model):
            continue
        partly_held = partly_held or cluster in held.projects
        if named and cluster in held.projects:
            label, values = named[0]
            missing.append(f"{_names(label, values)} in {model.cluster_label} {quote(cluster)}")
        else:
            missing.append(f"{model.cluster_label} {quote(cluster)}")
    hint = ""
    if partly_held and not named:
        hint = f"; add {_project_hint(sel.selector, model)} for a namespace you hold there"
    return f"{text}: no access to " + "; ".join(missing) + hint


def plan_selector(
    sel: SelectorReach, holdings: Holdings, mode: Mode, model: LabelModel, held: Held | None = None
) -> Plan:
    """Decide one selector: the branches of matchers to add, or AccessDenied."""
    if held is None:
        held = Held.of(holdings)
    if not held.anything():
        raise AccessDenied("you hold no access on this hub")
    plan = granted_plan(sel, held, model)
    if plan is not None:
        return plan
    if mode == "deny":
        raise AccessDenied(denied_message(sel, held, model))
    return narrowed_plan(sel, held, model)
