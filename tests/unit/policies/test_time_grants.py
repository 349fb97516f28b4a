"""Time-bounded grants in policies files: checks, and the Keycloak objects that express them."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yaml

from proxy.policies.checks import check_text
from proxy.policies.desired import desired_state
from proxy.policies.model import AccessModel
from proxy.policies.realm_json import realm_import
from proxy_demo.policy import DEMO_POLICY

BASE: dict[str, Any] = yaml.safe_load(DEMO_POLICY.read_text())
TODAY = datetime.now(UTC).date()


def doc(grants: list[dict[str, Any]], **top: Any) -> str:
    """The demo file with these grants (and top-level keys) instead of its own."""
    data = {**BASE, **top, "grants": grants}
    return yaml.safe_dump(data, sort_keys=False)


def check(text: str) -> tuple[AccessModel | None, list[str]]:
    """Model and `severity: message` lines."""
    model, problems = check_text(text, "f.yaml")
    return model, [f"{p.severity}: {p.message}" for p in problems]


def test_bounded_grant_is_valid_and_quiet() -> None:
    """A grant ending in a month, with no other path, yields no problem."""
    until = (TODAY + timedelta(days=30)).isoformat()
    model, problems = check(
        doc([{"user": "alice", "projects": {"nerc-ocp-prod": ["team-a"]}, "until": until}])
    )
    assert model is not None and problems == []
    assert model.grants[0].window.bounded


def test_ended_and_ending_warned() -> None:
    """A grant that ended and one ending within 14 days are warned about."""
    ended = (TODAY - timedelta(days=1)).isoformat()
    soon = (TODAY + timedelta(days=3)).isoformat()
    _, problems = check(
        doc(
            [
                {"user": "alice", "projects": {"nerc-ocp-prod": ["team-a"]}, "until": ended},
                {"user": "bob", "clusters": ["nerc-ocp-test"], "until": soon},
            ]
        )
    )
    assert any(p.startswith("warning: grant of user alice ended") for p in problems)
    assert any(p.startswith("warning: grant of user bob ends within 14 days") for p in problems)


def test_shadowed_by_cluster_grant_and_group() -> None:
    """A bounded project grant also held through an unbounded cluster grant or the user's group is flagged."""
    until = (TODAY + timedelta(days=60)).isoformat()
    _, problems = check(
        doc(
            [
                {"user": "carol", "projects": {"nerc-ocp-prod": ["team-a"]}, "until": until},
                {"user": "carol", "clusters": ["nerc-ocp-prod"]},
                {"user": "alice", "projects": {"nerc-ocp-test": ["team-a"]}, "until": until},
                {"group": "team-a", "clusters": ["nerc-ocp-test"]},
            ]
        )
    )
    shadow = [p for p in problems if "still granted without bound" in p]
    assert len(shadow) == 2
    assert "HUB-moc-CLUSTER-nerc-ocp-prod (unbounded grant of user carol)" in shadow[0] + shadow[1]
    assert "through group team-a" in shadow[0] + shadow[1]


def test_bad_windows_are_errors() -> None:
    """Unreadable dates, `until` before `from` and unknown zones are errors with their line."""
    model, problems = check(
        doc(
            [
                {"user": "alice", "projects": {"nerc-ocp-prod": ["team-a"]}, "until": "soon"},
                {"user": "bob", "clusters": ["nerc-ocp-test"], "from": "2026-02-01", "until": "2026-01-01"},
            ],
            time_zone="Nowhere/Land",
        )
    )
    assert model is None
    errors = [p for p in problems if p.startswith("error")]
    assert len(errors) == 3
    assert any("unknown time zone" in p for p in errors)


def test_desired_objects_for_bounded_grant() -> None:
    """Bounded: a time policy, an aggregate of user+time (UNANIMOUS), the permission naming only it."""
    text = doc(
        [
            {
                "user": "alice",
                "projects": {"nerc-ocp-prod": ["team-a"]},
                "from": "2026-01-01",
                "until": "2026-12-31",
            }
        ],
        time_zone="Europe/Berlin",
    )
    model, _ = check(text)
    assert model is not None
    state = desired_state(model)
    by_name = {p.name: p for p in state.policies}
    timed = by_name["time-20251231T230000-20261231T230000"]
    assert dict(timed.config) == {"nbf": "2025-12-31 23:00:00", "noa": "2026-12-31 23:00:00"}
    both = by_name["user-alice-time-20251231T230000-20261231T230000"]
    assert both.type == "aggregate" and both.members == ("user-alice", timed.name)
    perm = next(p for p in state.permissions if p.name.endswith("-user-alice-permission"))
    assert perm.policies == (both.name,) and perm.grantee_policy == "user-alice"
    export = realm_import(model)
    settings = export["clients"][0]["authorizationSettings"]
    names = [p["name"] for p in settings["policies"]]
    assert names.index(timed.name) < names.index(both.name) < names.index(perm.name)
    agg = next(p for p in settings["policies"] if p["name"] == both.name)
    assert agg["decisionStrategy"] == "UNANIMOUS"
    assert json.loads(agg["config"]["applyPolicies"]) == ["user-alice", timed.name]


def test_unbounded_grant_wins_over_bounded_one() -> None:
    """The same grantee and resource granted with and without end: the permission is unbounded."""
    model, _ = check(
        doc(
            [
                {
                    "user": "bob",
                    "clusters": ["nerc-ocp-test"],
                    "until": (TODAY + timedelta(days=90)).isoformat(),
                },
                {"user": "bob", "clusters": ["nerc-ocp-test"]},
            ]
        )
    )
    assert model is not None
    perm = next(p for p in desired_state(model).permissions if p.name.endswith("-user-bob-permission"))
    assert perm.policies == ("user-bob",)


def test_keycloak_zone_moves_written_values() -> None:
    """`keycloak_time_zone` changes what is written, not when the grant ends."""
    model, _ = check(
        doc(
            [
                {
                    "user": "alice",
                    "projects": {"nerc-ocp-prod": ["team-a"]},
                    "until": date(2026, 12, 31).isoformat(),
                }
            ],
            keycloak_time_zone="America/New_York",
        )
    )
    assert model is not None
    timed = next(p for p in desired_state(model).policies if p.type == "time")
    assert dict(timed.config) == {"noa": "2026-12-31 19:00:00"}
