"""Realm import (docs/keycloak.md): a realm representation becomes emulator state."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from keycloak_emulator.errors import check_columns
from keycloak_emulator.store import (
    Client,
    Group,
    GroupRef,
    Policy,
    Realm,
    Resource,
    ResourceServer,
    Scope,
    User,
    new_id,
)


class RealmImportError(ValueError):
    """The representation cannot be imported (Keycloak would fail the import too)."""


def import_realm(rep: Mapping[str, Any]) -> Realm:
    """Build a realm; authorization settings are imported after clients and users (§3.3)."""
    realm = Realm(name=rep["realm"], enabled=rep.get("enabled", True))
    realm.token_lifespan = int(rep.get("accessTokenLifespan", 300))
    for group in rep.get("groups", []):
        add_group(realm, group, None)
    for client_rep in rep.get("clients", []):
        add_client(realm, client_rep)
    for user_rep in rep.get("users", []):
        add_user(realm, user_rep)
    for client_rep in rep.get("clients", []):
        client = realm.client_by_client_id(client_rep["clientId"])
        assert client is not None
        ensure_service_account(realm, client)
        if client.authz is not None and client_rep.get("authorizationSettings"):
            import_authorization(realm, client.authz, client_rep["authorizationSettings"])
    return realm


def add_group(realm: Realm, rep: Mapping[str, Any], parent: str | None) -> Group:
    """Add a group and its sub-groups."""
    check_columns(rep["name"])
    group = Group(
        id=rep.get("id") or new_id(),
        name=rep["name"],
        parent_id=parent,
        attributes={k: list(v) for k, v in (rep.get("attributes") or {}).items()},
    )
    realm.groups[group.id] = group
    for sub in rep.get("subGroups", []):
        add_group(realm, sub, group.id)
    return group


def add_client(realm: Realm, rep: Mapping[str, Any]) -> Client:
    """Add a client; `authorizationServicesEnabled` forces a confidential, SA-enabled client."""
    authz = bool(rep.get("authorizationServicesEnabled", False))
    client = Client(
        id=rep.get("id") or new_id(),
        client_id=rep["clientId"],
        secret=rep.get("secret"),
        enabled=rep.get("enabled", True),
        public=bool(rep.get("publicClient", False)) and not authz,
        bearer_only=bool(rep.get("bearerOnly", False)) and not authz,
        service_accounts=bool(rep.get("serviceAccountsEnabled", False)) or authz,
        standard_flow=rep.get("standardFlowEnabled", True),
        direct_access=bool(rep.get("directAccessGrantsEnabled", False)),
        name=rep.get("name"),
        redirect_uris=list(rep.get("redirectUris", [])),
        attributes=dict(rep.get("attributes") or {}),
        protocol_mappers=[dict(m) for m in rep.get("protocolMappers", [])],
    )
    if authz:
        settings = rep.get("authorizationSettings") or {}
        client.authz = ResourceServer(
            id=client.id,
            decision_strategy=settings.get("decisionStrategy", "UNANIMOUS"),
            enforcement_mode=settings.get("policyEnforcementMode", "ENFORCING"),
            allow_remote=bool(settings.get("allowRemoteResourceManagement", False)),
        )
    realm.clients[client.id] = client
    return client


def add_user(realm: Realm, rep: Mapping[str, Any]) -> User:
    """Add a user with password credentials and group memberships by path."""
    password = next((c.get("value") for c in rep.get("credentials", []) if c.get("type") == "password"), None)
    user = User(
        id=rep.get("id") or new_id(),
        username=str(rep["username"]).lower(),
        enabled=rep.get("enabled", True),
        email=rep.get("email"),
        email_verified=bool(rep.get("emailVerified", False)),
        first_name=rep.get("firstName"),
        last_name=rep.get("lastName"),
        password=password,
        attributes={k: list(v) for k, v in (rep.get("attributes") or {}).items()},
    )
    sa_client = rep.get("serviceAccountClientId")
    if sa_client:
        client = realm.client_by_client_id(sa_client)
        user.service_account_client = client.id if client else None
    for path in rep.get("groups", []):
        group = realm.group_by_path(path)
        if group is None:
            raise RealmImportError(f"user {user.username}: group {path} does not exist")
        user.group_ids.append(group.id)
    realm.users[user.id] = user
    return user


def ensure_service_account(realm: Realm, client: Client) -> None:
    """Create `service-account-<clientId>` for SA-enabled clients that lack one (§3.3)."""
    if client.service_accounts and realm.service_account(client) is None:
        user = User(
            id=new_id(),
            username=f"service-account-{client.client_id}".lower(),
            service_account_client=client.id,
        )
        realm.users[user.id] = user


def import_authorization(realm: Realm, rs: ResourceServer, settings: Mapping[str, Any]) -> None:
    """Import scopes, resources and policies (by name, in list order) into a resource server."""
    rs.decision_strategy = settings.get("decisionStrategy", rs.decision_strategy)
    rs.enforcement_mode = settings.get("policyEnforcementMode", rs.enforcement_mode)
    for scope in settings.get("scopes", []):
        check_columns(scope["name"], scope.get("displayName"))
        if rs.scope_named(scope["name"]) is None:
            sid = scope.get("id") or new_id()
            rs.scopes[sid] = Scope(sid, scope["name"], scope.get("displayName"))
    for res in settings.get("resources", []):
        upsert_resource(rs, res)
    for pol in settings.get("policies", []):
        policy = policy_from_export(realm, rs, pol)
        existing = rs.policy_named(policy.name)
        if existing is not None:
            policy.id = existing.id
        rs.policies[policy.id] = policy


def upsert_resource(rs: ResourceServer, rep: Mapping[str, Any]) -> Resource:
    """Create or replace a server-owned resource from a ResourceRepresentation."""
    attributes = rep.get("attributes") or {}
    check_columns(rep["name"], rep.get("displayName"), rep.get("type"), *attributes)
    check_columns(*(v for values in attributes.values() for v in values))
    scope_ids = []
    for scope in rep.get("scopes", []):
        ref = scope.get("id") or scope.get("name", "")
        found = rs.scope_by_id_or_name(ref)
        if found is None:
            # Keycloak creates scopes a resource names that do not exist yet.
            found = Scope(new_id(), scope["name"])
            rs.scopes[found.id] = found
        scope_ids.append(found.id)
    existing = rs.resource_named(rep["name"])
    resource = Resource(
        id=(existing.id if existing else None) or rep.get("_id") or new_id(),
        name=rep["name"],
        owner=rs.id,
        scope_ids=scope_ids,
        display_name=rep.get("displayName"),
        type=rep.get("type") or None,
        uris=list(rep.get("uris", [])),
        attributes={k: list(v) for k, v in (rep.get("attributes") or {}).items()},
        owner_managed_access=bool(rep.get("ownerManagedAccess", False)),
    )
    rs.resources[resource.id] = resource
    return resource


def policy_from_export(realm: Realm, rs: ResourceServer, rep: Mapping[str, Any]) -> Policy:
    """A policy from its export form: every config value a JSON string of names (§3.2)."""
    config = dict(rep.get("config") or {})
    check_columns(rep["name"], rep.get("description"))
    policy = Policy(
        id=rep.get("id") or new_id(),
        name=rep["name"],
        type=rep["type"],
        description=rep.get("description"),
        logic=rep.get("logic", "POSITIVE"),
        decision_strategy=rep.get("decisionStrategy", "UNANIMOUS"),
    )
    policy.clients = [_client_ref(realm, c) for c in _json_list(config.pop("clients", None))]
    policy.users = [_user_ref(realm, u) for u in _json_list(config.pop("users", None))]
    policy.groups = [_group_ref(realm, g) for g in _json_list(config.pop("groups", None))]
    policy.groups_claim = config.pop("groupsClaim", None) or None
    policy.resource_ids = [
        _must(rs.resource_by_id_or_name(r), "Resource", r).id
        for r in _json_list(config.pop("resources", None))
    ]
    policy.scope_ids = [
        _must(rs.scope_by_id_or_name(s), "Scope", s).id for s in _json_list(config.pop("scopes", None))
    ]
    policy.policy_ids = [
        _must(rs.policy_by_id_or_name(p), "Policy", p).id
        for p in _json_list(config.pop("applyPolicies", None))
    ]
    policy.resource_type = config.pop("defaultResourceType", None) or None
    policy.config = config
    return policy


def _json_list(raw: str | None) -> list[Any]:
    if raw is None or raw == "":
        return []
    value = json.loads(raw)
    return list(value) if isinstance(value, list) else [value]


def _client_ref(realm: Realm, ref: str) -> str:
    client = realm.client_by_ref(ref)
    if client is None:
        raise RealmImportError(f"Client [{ref}] could not be found")
    return client.id


def _user_ref(realm: Realm, ref: str) -> str:
    user = realm.users.get(ref) or realm.user_by_username(ref)
    if user is None:
        raise RealmImportError(f"User [{ref}] could not be found")
    return user.id


def _group_ref(realm: Realm, ref: Any) -> GroupRef:
    group = None
    if isinstance(ref, Mapping):
        group = realm.groups.get(ref.get("id") or "") or realm.group_by_path(ref.get("path") or "")
        extend = bool(ref.get("extendChildren", False))
    else:
        group, extend = realm.group_by_path(str(ref)), False
    if group is None:
        raise RealmImportError(f"Group [{ref}] could not be found")
    return GroupRef(group.id, extend)


def _must(found: Any, what: str, ref: str) -> Any:
    if found is None:
        raise RealmImportError(f"{what} with id or name [{ref}] does not exist")
    return found
