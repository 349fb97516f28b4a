"""Policy evaluation follows Keycloak's rules (docs/keycloak.md), exercised in-process."""

from __future__ import annotations

import pytest

from keycloak_emulator import Emulator, EmulatorError
from keycloak_emulator.store import GroupRef, Policy, ResourceServer, new_id
from tests.unit.emulator.support import RS

HUB = "HUB-moc"


def server(emu: Emulator) -> ResourceServer:
    """The demo resource server's store."""
    client = emu.realm("nerc").client_by_client_id(RS)
    assert client is not None and client.authz is not None
    return client.authz


def add(rs: ResourceServer, policy: Policy) -> Policy:
    """Store a policy or permission."""
    rs.policies[policy.id] = policy
    return policy


def held(emu: Emulator, user: str, *permissions: str) -> list[str]:
    """Resource names granted to `user` (empty when Keycloak would answer 403)."""
    token = emu.password_token("nerc", user, f"{user}-password")["access_token"]
    try:
        return [p["rsname"] for p in emu.uma("nerc", token, RS, permissions)]
    except EmulatorError as exc:
        assert exc.status == 403
        return []


def veto_permission(emu: Emulator) -> None:
    """A second permission on HUB-moc whose only policy is a user policy for bob."""
    rs = server(emu)
    user = emu.realm("nerc").user_by_username("bob")
    assert user is not None
    bob_only = add(rs, Policy(new_id(), "user-bob-only", "user", users=[user.id]))
    resource = rs.resource_named(HUB)
    scope = rs.scope_named("GET")
    assert resource is not None and scope is not None
    add(
        rs,
        Policy(
            new_id(),
            "veto",
            "scope",
            resource_ids=[resource.id],
            scope_ids=[scope.id],
            policy_ids=[bob_only.id],
        ),
    )


def test_affirmative_server_ignores_a_non_matching_permission(emu: Emulator) -> None:
    """§4.5 / DPC: AFFIRMATIVE (the demo's) → one granting permission is enough."""
    veto_permission(emu)
    assert held(emu, "dave", f"{HUB}#GET") == [HUB]


def test_unanimous_server_lets_one_permission_veto(emu: Emulator) -> None:
    """§0.6 / §4.5 / DPC: under UNANIMOUS a single non-matching permission denies the resource."""
    veto_permission(emu)
    server(emu).decision_strategy = "UNANIMOUS"
    assert held(emu, "dave", f"{HUB}#GET") == []


def test_negative_logic_turns_a_miss_into_a_permit(emu: Emulator) -> None:
    """§4.3 / DefaultEvaluation: NEGATIVE swaps PERMIT and DENY, so a non-match permits."""
    rs = server(emu)
    user = emu.realm("nerc").user_by_username("dave")
    assert user is not None
    not_dave = add(rs, Policy(new_id(), "not-dave", "user", logic="NEGATIVE", users=[user.id]))
    perm = rs.policy_named("HUB-GET-permission")
    assert perm is not None
    perm.policy_ids.append(not_dave.id)
    assert held(emu, "eve", "HUB#GET") == ["HUB"]
    assert held(emu, "dave", "HUB#GET") == []


def test_group_policy_follows_membership_and_extend_children(emu: Emulator) -> None:
    """§4.3 GroupPolicyProvider: path match; sub-groups only with extendChildren."""
    realm = emu.realm("nerc")
    team_a = realm.group_by_path("/team-a")
    alice = realm.user_by_username("alice")
    assert team_a is not None and alice is not None
    from keycloak_emulator.store import Group

    child = Group(new_id(), "interns", parent_id=team_a.id)
    realm.groups[child.id] = child
    alice.group_ids = [child.id]
    rs = server(emu)
    exact = add(rs, Policy(new_id(), "team-a-exact", "group", groups=[GroupRef(team_a.id, False)]))
    perm = rs.policy_named("HUB-GET-permission")
    assert perm is not None
    perm.policy_ids.append(exact.id)
    assert held(emu, "alice", "HUB#GET") == []
    exact.groups = [GroupRef(team_a.id, True)]
    assert held(emu, "alice", "HUB#GET") == ["HUB"]


def test_aggregate_policy_combines_children_with_its_strategy(emu: Emulator) -> None:
    """§4.3 AggregatePolicyProvider: children combined with the aggregate's decisionStrategy."""
    rs = server(emu)
    dave = rs.policy_named("user-dave")
    bob = rs.policy_named("user-bob")
    perm = rs.policy_named("HUB-GET-permission")
    assert dave is not None and bob is not None and perm is not None
    both = add(
        rs, Policy(new_id(), "both", "aggregate", decision_strategy="UNANIMOUS", policy_ids=[dave.id, bob.id])
    )
    perm.policy_ids.append(both.id)
    assert held(emu, "dave", "HUB#GET") == []
    both.decision_strategy = "AFFIRMATIVE"
    assert held(emu, "dave", "HUB#GET") == ["HUB"]


@pytest.mark.parametrize(
    ("mode", "expected"), [("ENFORCING", []), ("PERMISSIVE", ["HUB"]), ("DISABLED", ["HUB"])]
)
def test_enforcement_modes_for_a_resource_without_permissions(
    emu: Emulator, mode: str, expected: list[str]
) -> None:
    """§4.6: no applicable permission → ENFORCING denies, PERMISSIVE grants; DISABLED grants all."""
    rs = server(emu)
    perm = rs.policy_named("HUB-GET-permission")
    assert perm is not None
    del rs.policies[perm.id]
    rs.enforcement_mode = mode
    assert held(emu, "eve", "HUB#GET") == expected


def test_permission_without_policies_grants_nothing(emu: Emulator) -> None:
    """§4.4: a permission with no associated policies records no decision → not granted."""
    rs = server(emu)
    perm = rs.policy_named("HUB-moc-GET-user-dave-permission")
    assert perm is not None
    perm.policy_ids = []
    assert held(emu, "dave", f"{HUB}#GET") == []
