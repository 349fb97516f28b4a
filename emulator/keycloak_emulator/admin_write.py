"""Admin REST writes: typed representations in, emulator state changed as Keycloak would."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keycloak_emulator import timepolicy
from keycloak_emulator.errors import KeycloakError, admin_error, check_columns
from keycloak_emulator.realm_import import add_client, ensure_service_account
from keycloak_emulator.store import Client, GroupRef, Policy, Realm, ResourceServer, new_id

POLICY_TYPES = {"group", "user", "client", "aggregate", "js", "time", "scope", "resource"}


def policy_from_typed(
    realm: Realm, rs: ResourceServer, policy_type: str, rep: Mapping[str, Any], policy_id: str | None
) -> Policy:
    """Build a policy from `POST/PUT …/policy/{type}` or `…/permission/{type}` bodies."""
    if policy_type not in POLICY_TYPES:
        raise admin_error(400, f"Policy provider for type [{policy_type}] not found")
    if not rep.get("name"):
        raise admin_error(400, "Policy name is required")
    check_columns(rep["name"], rep.get("description"))
    policy = Policy(
        id=policy_id or new_id(),
        name=str(rep["name"]),
        type=policy_type,
        description=rep.get("description"),
        logic=rep.get("logic") or "POSITIVE",
        decision_strategy=rep.get("decisionStrategy") or "UNANIMOUS",
    )
    policy.groups = [_group(realm, g) for g in rep.get("groups") or []]
    policy.groups_claim = rep.get("groupsClaim") or None
    policy.users = [_user(realm, u) for u in rep.get("users") or []]
    policy.clients = [_client(realm, c) for c in rep.get("clients") or []]
    policy.resource_ids = [
        _ref(rs.resource_by_id_or_name(r), "Resource", r) for r in rep.get("resources") or []
    ]
    policy.scope_ids = [_ref(rs.scope_by_id_or_name(s), "Scope", s) for s in rep.get("scopes") or []]
    policy.policy_ids = [_ref(rs.policy_by_id_or_name(p), "Policy", p) for p in rep.get("policies") or []]
    policy.resource_type = rep.get("resourceType") or None
    if policy_type == "time":
        policy.config.update(timepolicy.config_from_typed(rep))
    if policy_type == "js" and rep.get("code"):
        policy.config["code"] = str(rep["code"])
    return policy


def store_policy(rs: ResourceServer, policy: Policy, *, replacing: str | None) -> None:
    """Save a policy, refusing a second object with the same name."""
    clash = rs.policy_named(policy.name)
    if clash is not None and clash.id != replacing:
        raise admin_error(409, f"Policy with name [{policy.name}] already exists")
    rs.policies[policy.id] = policy


def apply_client_update(realm: Realm, client: Client, rep: Mapping[str, Any]) -> None:
    """`PUT /clients/{id}`: update the fields the emulator models."""
    for key, attr in (
        ("enabled", "enabled"),
        ("publicClient", "public"),
        ("bearerOnly", "bearer_only"),
        ("standardFlowEnabled", "standard_flow"),
        ("directAccessGrantsEnabled", "direct_access"),
        ("serviceAccountsEnabled", "service_accounts"),
        ("secret", "secret"),
        ("name", "name"),
        ("redirectUris", "redirect_uris"),
        ("attributes", "attributes"),
    ):
        if key in rep:
            setattr(client, attr, rep[key])
    if rep.get("authorizationServicesEnabled") and client.authz is None:
        # Enabling authorization forces a confidential client with a service account (§3.3).
        client.public, client.bearer_only, client.service_accounts = False, False, True
        client.authz = ResourceServer(id=client.id)
    elif rep.get("authorizationServicesEnabled") is False:
        client.authz = None
    ensure_service_account(realm, client)


def create_client(realm: Realm, rep: Mapping[str, Any]) -> Client:
    """`POST /clients`: 409 on a duplicate clientId."""
    if not rep.get("clientId"):
        raise admin_error(400, "clientId is required")
    if realm.client_by_client_id(str(rep["clientId"])) is not None:
        raise admin_error(409, f"Client {rep['clientId']} already exists")
    client = add_client(realm, {k: v for k, v in rep.items() if k != "authorizationSettings"})
    ensure_service_account(realm, client)
    return client


def _group(realm: Realm, ref: Any) -> GroupRef:
    if isinstance(ref, Mapping):
        group = realm.groups.get(str(ref.get("id") or "")) or realm.group_by_path(str(ref.get("path") or ""))
        if group is not None:
            return GroupRef(group.id, bool(ref.get("extendChildren", False)))
    raise admin_error(400, f"Group with id [{ref}] not found")


def _user(realm: Realm, ref: str) -> str:
    user = realm.users.get(ref) or realm.user_by_username(ref)
    if user is None:
        raise admin_error(400, f"User [{ref}] does not exist")
    return user.id


def _client(realm: Realm, ref: str) -> str:
    client = realm.client_by_ref(ref)
    if client is None:
        raise admin_error(400, f"Client with id [{ref}] not found")
    return client.id


def _ref(found: Any, what: str, ref: str) -> str:
    if found is None:
        raise KeycloakError(400, "invalid_request", body={"errorMessage": f"{what} [{ref}] does not exist"})
    return str(found.id)
