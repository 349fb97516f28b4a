"""Filters for upstream answers that list other tenants' objects: rules, alerts, metadata.

Pure functions over decoded JSON; a visibility predicate decides, the caller serialises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Visible = Callable[[Mapping[str, str]], bool]

_STATE_ORDER = ("firing", "pending", "inactive")


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """The string labels of a rule or alert (anything else in `labels` is ignored)."""
    raw = obj.get("labels") or {}
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): str(v) for k, v in raw.items()}


def filter_alerts(data: Mapping[str, Any], visible: Visible) -> dict[str, Any]:
    """`/api/v1/alerts` data: only alerts whose labels are visible."""
    alerts = data.get("alerts") or []
    return {**data, "alerts": [a for a in alerts if isinstance(a, Mapping) and visible(_labels(a))]}


def _rule_state(alerts: list[Mapping[str, Any]]) -> str:
    """An alerting rule's state recomputed from the alerts the caller may see."""
    states = {str(a.get("state", "")).lower() for a in alerts}
    for state in _STATE_ORDER:
        if state in states:
            return state
    return "inactive"


def _filter_rule(rule: Mapping[str, Any], visible: Visible, hub_wide: bool) -> Mapping[str, Any] | None:
    """One rule as the caller may see it, or None."""
    own_labels_visible = visible(_labels(rule))
    if rule.get("type") == "alerting":
        alerts = [a for a in rule.get("alerts") or [] if isinstance(a, Mapping) and visible(_labels(a))]
        if not own_labels_visible and not alerts and not hub_wide:
            return None
        if hub_wide:
            return rule
        return {**rule, "alerts": alerts, "state": _rule_state(alerts)}
    # Recording rules aggregate across tenants unless their own labels pin them to one.
    return rule if hub_wide or own_labels_visible else None


def filter_rules(data: Mapping[str, Any], visible: Visible, hub_wide: bool) -> dict[str, Any]:
    """`/api/v1/rules` data: visible rules only, their alerts filtered, empty groups dropped."""
    groups = []
    for group in data.get("groups") or []:
        if not isinstance(group, Mapping):
            continue
        rules = [
            kept
            for rule in group.get("rules") or []
            if isinstance(rule, Mapping) and (kept := _filter_rule(rule, visible, hub_wide))
        ]
        if rules:
            groups.append({**group, "rules": rules})
    return {**data, "groups": groups}


def filter_metadata(data: Mapping[str, Any], names: frozenset[str] | None) -> dict[str, Any]:
    """`/api/v1/metadata` data limited to metric names the caller can see (None: all)."""
    if names is None:
        return dict(data)
    return {k: v for k, v in data.items() if k in names}
