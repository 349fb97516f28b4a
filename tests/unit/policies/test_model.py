"""The access model names resources and objects as the proxy and the telemetry portal (docs/policies.md)."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.policies import names
from proxy.policies.checks import SCHEMA_PATH, schema
from proxy.policies.desired import desired_state
from proxy.policies.loader import load
from proxy.policies.model import Grantee
from proxy_demo.policy import DEMO_POLICY

POLICIES = Path(__file__).resolve().parents[3] / "policies"


def test_resource_names_follow_spec_4_1() -> None:
    """HUB, HUB-<hub>, HUB-<hub>-CLUSTER-<c>, HUB-<hub>-CLUSTER-<c>-PROJECT-<p>, hub first."""
    model = load(DEMO_POLICY)
    resources = model.resource_names()
    assert resources[:4] == [
        "HUB",
        "HUB-moc",
        "HUB-moc-CLUSTER-nerc-ocp-prod",
        "HUB-moc-CLUSTER-nerc-ocp-test",
    ]
    assert "HUB-moc-CLUSTER-nerc-ocp-test-PROJECT-team-c" in resources and len(resources) == 10


def test_realm_without_top_level_hub() -> None:
    """`hub_resource: false` leaves the top-level HUB resource out."""
    assert "HUB" not in load(POLICIES / "example-nerc.yaml").resource_names()


def test_demo_identities_hold_what_the_brief_says() -> None:
    """alice one project, bob one cluster, carol mixed, dave the hub, eve nothing, researcher team-a."""
    model = load(DEMO_POLICY)
    prod, test = "HUB-moc-CLUSTER-nerc-ocp-prod", "HUB-moc-CLUSTER-nerc-ocp-test"
    assert model.granted_to(Grantee("user", "alice")) == {f"{prod}-PROJECT-team-a"}
    assert model.granted_to(Grantee("user", "bob")) == {test}
    assert model.granted_to(Grantee("user", "carol")) == {prod, f"{test}-PROJECT-team-b"}
    assert model.granted_to(Grantee("user", "dave")) == {"HUB-moc"}
    assert model.granted_to(Grantee("user", "eve")) == frozenset()
    assert model.granted_to(Grantee("client", "researcher-team-a")) == {
        f"{prod}-PROJECT-team-a",
        f"{test}-PROJECT-team-a",
    }


def test_desired_objects_use_the_portal_names() -> None:
    """Groups and group policies `<resource>-GET`, permissions `<resource>-GET-permission`, all marked."""
    state = desired_state(load(DEMO_POLICY))
    project = "HUB-moc-CLUSTER-nerc-ocp-prod-PROJECT-team-a"
    assert f"{project}-GET" in state.groups
    portal = next(p for p in state.permissions if p.name == f"{project}-GET-permission")
    assert portal.policies == (f"{project}-GET",)
    grant = next(p for p in state.permissions if p.name == f"{project}-GET-user-alice-permission")
    assert (grant.resource, grant.policies) == (project, ("user-alice",))
    descriptions = [p.description for p in state.policies] + [p.description for p in state.permissions]
    assert all(names.is_marked_description(d) for d in descriptions)


def test_published_schema_is_the_packaged_one() -> None:
    """`policies/schema.json` (for editors) is the schema the loader validates with."""
    assert json.loads((POLICIES / "schema.json").read_text()) == schema()
    assert SCHEMA_PATH.name == "schema.json"
