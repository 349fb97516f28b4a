"""Admin REST representations of emulator state, as Keycloak's ModelToRepresentation writes them."""

from __future__ import annotations

import json
from typing import Any

from keycloak_emulator import timepolicy
from keycloak_emulator.endpoints import resource_json
from keycloak_emulator.store import Client, Group, Policy, Realm, ResourceServer, User


def client_rep(client: Client) -> dict[str, Any]:
    """ClientRepresentation (the secret is included, as for a realm admin)."""
    rep: dict[str, Any] = {
        "id": client.id,
        "clientId": client.client_id,
        "name": client.name,
        "enabled": client.enabled,
        "clientAuthenticatorType": "client-secret",
        "redirectUris": client.redirect_uris,
        "bearerOnly": client.bearer_only,
        "publicClient": client.public,
        "standardFlowEnabled": client.standard_flow,
        "directAccessGrantsEnabled": client.direct_access,
        "serviceAccountsEnabled": client.service_accounts,
        "authorizationServicesEnabled": client.authz is not None,
        "protocol": "openid-connect",
        "attributes": client.attributes,
        "protocolMappers": client.protocol_mappers,
    }
    if client.secret and not client.public:
        rep["secret"] = client.secret
    return {k: v for k, v in rep.items() if v is not None}


def user_rep(user: User) -> dict[str, Any]:
    """UserRepresentation (brief: no credentials, no groups)."""
    rep: dict[str, Any] = {
        "id": user.id,
        "username": user.username,
        "enabled": user.enabled,
        "emailVerified": user.email_verified,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "email": user.email,
        "attributes": user.attributes or None,
        "createdTimestamp": user.created,
        "totp": False,
        "requiredActions": [],
    }
    return {k: v for k, v in rep.items() if v is not None}


def group_rep(realm: Realm, group: Group) -> dict[str, Any]:
    """GroupRepresentation with its path and sub-group count."""
    children = [g for g in realm.groups.values() if g.parent_id == group.id]
    rep: dict[str, Any] = {
        "id": group.id,
        "name": group.name,
        "path": realm.group_path(group.id),
        "parentId": group.parent_id,
        "subGroupCount": len(children),
        "subGroups": [],
        "attributes": group.attributes,
        "realmRoles": [],
        "clientRoles": {},
    }
    return {k: v for k, v in rep.items() if v is not None}


def server_rep(client: Client, rs: ResourceServer) -> dict[str, Any]:
    """ResourceServerRepresentation (`GET …/authz/resource-server`)."""
    return {
        "id": rs.id,
        "clientId": client.id,
        "name": client.client_id,
        "allowRemoteResourceManagement": rs.allow_remote,
        "policyEnforcementMode": rs.enforcement_mode,
        "decisionStrategy": rs.decision_strategy,
        "authorizationSchema": {"resourceTypes": {}},
    }


def policy_generic(policy: Policy) -> dict[str, Any]:
    """A policy as the `…/policy` list shows it: associations by id only for policy types."""
    config: dict[str, str] = dict(policy.config)
    if policy.type == "group":
        config["groups"] = json.dumps(
            [{"id": g.id, "extendChildren": g.extend_children} for g in policy.groups]
        )
        if policy.groups_claim:
            config["groupsClaim"] = policy.groups_claim
    elif policy.type == "user":
        config["users"] = json.dumps(policy.users)
    elif policy.type == "client":
        config["clients"] = json.dumps(policy.clients)
    if policy.resource_type:
        config["defaultResourceType"] = policy.resource_type
    rep: dict[str, Any] = {
        "id": policy.id,
        "name": policy.name,
        "description": policy.description,
        "type": policy.type,
        "logic": policy.logic,
        "decisionStrategy": policy.decision_strategy,
        "config": config,
    }
    return {k: v for k, v in rep.items() if v is not None}


def policy_typed(realm: Realm, policy: Policy) -> dict[str, Any]:
    """A policy as `GET …/policy/{type}/{id}` returns it."""
    rep = policy_generic(policy)
    rep.pop("config")
    if policy.type == "group":
        rep["groups"] = [
            {"id": g.id, "path": realm.group_path(g.id), "extendChildren": g.extend_children}
            for g in policy.groups
        ]
        if policy.groups_claim:
            rep["groupsClaim"] = policy.groups_claim
    elif policy.type == "user":
        rep["users"] = list(policy.users)
    elif policy.type == "client":
        rep["clients"] = list(policy.clients)
    elif policy.type == "time":
        rep.update(timepolicy.typed_fields(policy.config))
    elif policy.is_permission and policy.resource_type:
        rep["resourceType"] = policy.resource_type
    return rep


def export_settings(realm: Realm, client: Client, rs: ResourceServer) -> dict[str, Any]:
    """`GET …/settings` = ExportUtils.exportAuthorizationSettings: everything by name, no ids."""
    resources = []
    for resource in rs.resources.values():
        rep = resource_json(realm, rs, resource)
        rep.pop("_id")
        if resource.owner == rs.id:
            rep.pop("owner")
        else:
            owner = realm.users.get(resource.owner)
            rep["owner"] = {"name": owner.username if owner else resource.owner}
        rep["scopes"] = [{"name": s["name"]} for s in rep["scopes"]]
        resources.append(rep)
    policies = [p for p in rs.policies.values() if not p.is_permission]
    policies += [p for p in rs.policies.values() if p.is_permission]
    return {
        "allowRemoteResourceManagement": rs.allow_remote,
        "policyEnforcementMode": rs.enforcement_mode,
        "resources": resources,
        "policies": [_export_policy(realm, rs, p) for p in policies],
        "scopes": [{"name": s.name} for s in rs.scopes.values()],
        "decisionStrategy": rs.decision_strategy,
        "authorizationSchema": {"resourceTypes": {}},
    }


def _export_policy(realm: Realm, rs: ResourceServer, policy: Policy) -> dict[str, Any]:
    rep = policy_generic(policy)
    rep.pop("id")
    config: dict[str, str] = dict(policy.config)
    if policy.type == "group":
        config["groups"] = json.dumps(
            [{"path": realm.group_path(g.id), "extendChildren": g.extend_children} for g in policy.groups]
        )
        if policy.groups_claim:
            config["groupsClaim"] = policy.groups_claim
    elif policy.type == "user":
        config["users"] = json.dumps([realm.users[u].username for u in policy.users if u in realm.users])
    elif policy.type == "client":
        config["clients"] = json.dumps(
            [realm.clients[c].client_id for c in policy.clients if c in realm.clients]
        )
    names = {
        "scopes": [rs.scopes[s].name for s in policy.scope_ids if s in rs.scopes],
        "resources": [rs.resources[r].name for r in policy.resource_ids if r in rs.resources],
        "applyPolicies": [rs.policies[p].name for p in policy.policy_ids if p in rs.policies],
    }
    for key, values in names.items():
        if values:
            config[key] = json.dumps(values)
    if policy.resource_type:
        config["defaultResourceType"] = policy.resource_type
    rep["config"] = config
    return rep
