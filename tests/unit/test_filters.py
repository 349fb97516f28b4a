"""`proxy.filters`: rules, alerts and metadata filtered per docs/http.md#filtering, as pure functions."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from proxy.filters import filter_alerts, filter_metadata, filter_rules


def only_team_a(labels: Mapping[str, str]) -> bool:
    """Visibility of a caller holding PROJECT team-a on c1 (namespace label only, for brevity)."""
    return labels.get("cluster") == "c1" and labels.get("namespace") == "team-a"


def alert(namespace: str, state: str = "firing") -> dict[str, Any]:
    """An alert of cluster c1 in `namespace`."""
    return {
        "labels": {"alertname": "A", "cluster": "c1", "namespace": namespace},
        "state": state,
        "value": "1",
    }


def alerting(
    name: str, alerts: list[dict[str, Any]], labels: dict[str, str] | None = None, state: str = "firing"
) -> dict[str, Any]:
    """An alerting rule as Prometheus lists it."""
    return {
        "name": name,
        "type": "alerting",
        "query": "x > 0",
        "labels": labels or {"severity": "info"},
        "alerts": alerts,
        "state": state,
        "health": "ok",
    }


def recording(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A recording rule as Prometheus lists it."""
    out: dict[str, Any] = {"name": name, "type": "recording", "query": "sum(x)", "health": "ok"}
    if labels is not None:
        out["labels"] = labels
    return out


def rules_data(*groups: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """`/api/v1/rules` data with the given groups."""
    return {"groups": [{"name": n, "file": "r.yml", "interval": 30, "rules": rs} for n, rs in groups]}


def test_alerts_keep_only_visible() -> None:
    """`filter_alerts` keeps exactly the alerts whose labels are visible."""
    data = {"alerts": [alert("team-a"), alert("team-b"), {"labels": {"alertname": "NoCluster"}}]}
    assert filter_alerts(data, only_team_a) == {"alerts": [alert("team-a")]}


def test_alerts_tolerate_missing_list_and_junk() -> None:
    """A missing `alerts` list or non-object entries never crash and never pass through."""
    assert filter_alerts({}, only_team_a) == {"alerts": []}
    assert filter_alerts({"alerts": ["junk", 3, alert("team-a")]}, only_team_a) == {
        "alerts": [alert("team-a")]
    }


def test_alerting_rule_kept_for_visible_alert_with_others_removed() -> None:
    """An alerting rule with invisible labels is shown for its visible alerts, the others removed."""
    data = rules_data(("g", [alerting("A", [alert("team-b"), alert("team-a")])]))
    out = filter_rules(data, only_team_a, hub_wide=False)
    (rule,) = out["groups"][0]["rules"]
    assert rule["alerts"] == [alert("team-a")]
    assert rule["state"] == "firing"


def test_alerting_rule_state_recomputed_from_visible_alerts() -> None:
    """The state follows the visible alerts only: pending when another tenant's alert fires."""
    data = rules_data(("g", [alerting("A", [alert("team-b", "firing"), alert("team-a", "pending")])]))
    (rule,) = filter_rules(data, only_team_a, hub_wide=False)["groups"][0]["rules"]
    assert rule["state"] == "pending"


def test_alerting_rule_visible_by_labels_without_alerts_is_inactive() -> None:
    """A rule whose own labels are visible is shown even with no visible alert, as inactive."""
    labels = {"cluster": "c1", "namespace": "team-a", "severity": "warning"}
    data = rules_data(("g", [alerting("A", [alert("team-b")], labels=labels)]))
    (rule,) = filter_rules(data, only_team_a, hub_wide=False)["groups"][0]["rules"]
    assert rule["alerts"] == []
    assert rule["state"] == "inactive"


def test_alerting_rule_without_anything_visible_is_dropped_with_its_group() -> None:
    """A rule with invisible labels and no visible alert is dropped; a group left empty is dropped."""
    data = rules_data(
        ("other", [alerting("B", [alert("team-b")])]), ("mine", [alerting("A", [alert("team-a")])])
    )
    out = filter_rules(data, only_team_a, hub_wide=False)
    assert [g["name"] for g in out["groups"]] == ["mine"]


def test_recording_rules_only_for_hub_wide_unless_labels_visible() -> None:
    """Recording rules are hidden from non-hub callers unless their own labels are visible."""
    data = rules_data(
        (
            "rec",
            [
                recording("agg"),
                recording("mine", {"cluster": "c1", "namespace": "team-a"}),
                recording("theirs", {"cluster": "c1", "namespace": "team-b"}),
            ],
        )
    )
    out = filter_rules(data, only_team_a, hub_wide=False)
    assert [r["name"] for r in out["groups"][0]["rules"]] == ["mine"]
    assert filter_rules(data, only_team_a, hub_wide=True) == data


def test_hub_wide_sees_rules_unchanged() -> None:
    """A hub-wide caller gets every rule with its alerts and state unchanged."""
    data = rules_data(("g", [alerting("A", [alert("team-b"), alert("team-a", "pending")]), recording("agg")]))
    assert filter_rules(data, lambda labels: True, hub_wide=True) == data


def test_rules_filter_does_not_mutate_input_and_keeps_group_fields() -> None:
    """Filtering copies: the upstream document is untouched and group fields survive."""
    data = rules_data(("g", [alerting("A", [alert("team-b"), alert("team-a")])]))
    before = copy.deepcopy(data)
    out = filter_rules(data, only_team_a, hub_wide=False)
    assert data == before
    assert out["groups"][0]["file"] == "r.yml" and out["groups"][0]["interval"] == 30


def test_rules_filter_ignores_junk() -> None:
    """Non-object groups/rules and a missing `groups` list never crash and never pass through."""
    assert filter_rules({}, only_team_a, hub_wide=False) == {"groups": []}
    data = {"groups": ["junk", {"name": "g", "rules": ["junk", alerting("A", [alert("team-a")])]}]}
    out = filter_rules(data, only_team_a, hub_wide=False)
    assert [r["name"] for g in out["groups"] for r in g["rules"]] == ["A"]


def test_non_string_labels_are_stringified_not_trusted() -> None:
    """Label values that are not strings are compared as strings (a number never matches a name)."""
    data = {"alerts": [{"labels": {"cluster": "c1", "namespace": 1}}, {"labels": "junk"}]}
    assert filter_alerts(data, only_team_a) == {"alerts": []}


def test_metadata_filtered_to_names() -> None:
    """`filter_metadata` keeps the visible names only; None (hub-wide) keeps everything."""
    data = {"a": [{"type": "gauge"}], "b": [{"type": "counter"}]}
    assert filter_metadata(data, frozenset({"a", "zzz"})) == {"a": [{"type": "gauge"}]}
    assert filter_metadata(data, frozenset()) == {}
    assert filter_metadata(data, None) == data
