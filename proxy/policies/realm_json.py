"""`policies export`: a realm-import JSON for the Keycloak operator (docs/keycloak.md)."""

from __future__ import annotations

import json
from typing import Any

from proxy.policies import names
from proxy.policies.desired import DesiredState, Policy, desired_state
from proxy.policies.model import AccessModel, Client, User

MANAGED_ATTRIBUTES = {names.MANAGED_BY_KEY: [names.MANAGED_BY_VALUE]}
# Client attributes are a string map, unlike the list-valued attributes of groups and users.
CLIENT_ATTRIBUTES = {names.MANAGED_BY_KEY: names.MANAGED_BY_VALUE}


def realm_import(model: AccessModel) -> dict[str, Any]:
    """The realm representation Keycloak's import (and the emulator) accept."""
    resource_server = resource_server_rep(model)
    resource_server["authorizationSettings"] = authorization_settings(desired_state(model))
    state = desired_state(model)
    return {
        "realm": model.realm,
        "enabled": True,
        "sslRequired": "external",
        "accessTokenLifespan": 300,
        "groups": [{"name": g, "path": f"/{g}", "attributes": MANAGED_ATTRIBUTES} for g in state.groups],
        "users": [user_rep(u) for u in model.users],
        "clients": [resource_server, *(client_rep(c, model) for c in model.clients)],
    }


def resource_server_rep(model: AccessModel) -> dict[str, Any]:
    """The resource-server client, without its authorization settings."""
    rs = model.resource_server
    resource_server: dict[str, Any] = {
        "clientId": rs.client_id,
        "name": f"{rs.client_id} (resource server of the authorizing PromQL proxy)",
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "standardFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": True,
        "authorizationServicesEnabled": True,
        "attributes": CLIENT_ATTRIBUTES,
        "protocolMappers": _mappers(model),
    }
    if rs.secret:
        resource_server["secret"] = rs.secret
    return resource_server


def authorization_settings(state: DesiredState) -> dict[str, Any]:
    """The resource server's `authorizationSettings`; permissions listed after their policies."""
    policies = [
        {
            "name": p.name,
            "description": p.description,
            "type": p.type,
            "logic": "POSITIVE",
            "decisionStrategy": "UNANIMOUS",
            "config": policy_config(p),
        }
        for p in state.policies
    ]
    permissions = [
        {
            "name": p.name,
            "description": p.description,
            "type": "scope",
            "logic": "POSITIVE",
            "decisionStrategy": "AFFIRMATIVE",
            "config": {
                "resources": json.dumps([p.resource]),
                "scopes": json.dumps([state.scope]),
                "applyPolicies": json.dumps(list(p.policies)),
            },
        }
        for p in state.permissions
    ]
    return {
        "allowRemoteResourceManagement": False,
        "policyEnforcementMode": "ENFORCING",
        # One resource may carry several permissions (portal + file): a single non-matching
        # permission must not veto the others (docs/keycloak.md#realm-import-and-decision-strategies).
        "decisionStrategy": "AFFIRMATIVE",
        "scopes": [{"name": state.scope}],
        "resources": [
            {
                "name": r,
                "displayName": r,
                "ownerManagedAccess": False,
                "attributes": MANAGED_ATTRIBUTES,
                "scopes": [{"name": state.scope}],
            }
            for r in state.resources
        ],
        "policies": policies + permissions,
    }


def policy_config(policy: Policy) -> dict[str, str]:
    """The export `config` of a policy (time: `nbf`/`noa`; aggregate: `applyPolicies` by name)."""
    if policy.type == "time":
        return dict(policy.config)
    if policy.type == "aggregate":
        return {"applyPolicies": json.dumps(list(policy.members))}
    return {_config_key(policy.type): _config_members(policy.type, policy.members)}


def _config_key(policy_type: str) -> str:
    return {"group": "groups", "user": "users", "client": "clients"}[policy_type]


def _config_members(policy_type: str, members: tuple[str, ...]) -> str:
    # Keycloak's import wants every config value as a string holding JSON (docs/keycloak.md).
    if policy_type == "group":
        return json.dumps([{"path": m, "extendChildren": False} for m in members])
    return json.dumps(list(members))


def user_rep(user: User) -> dict[str, Any]:
    """A UserRepresentation with password credentials and group paths."""
    rep: dict[str, Any] = {
        "username": user.username,
        "enabled": True,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "groups": [f"/{g}" for g in user.groups],
        "attributes": MANAGED_ATTRIBUTES,
    }
    if user.email:
        rep["email"] = user.email
        rep["emailVerified"] = True
    if user.password:
        rep["credentials"] = [{"type": "password", "value": user.password, "temporary": False}]
    return rep


def client_rep(client: Client, model: AccessModel) -> dict[str, Any]:
    """A ClientRepresentation of a declared client."""
    rep: dict[str, Any] = {
        "clientId": client.client_id,
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": client.public,
        "standardFlowEnabled": client.standard_flow,
        "directAccessGrantsEnabled": client.direct_access,
        "serviceAccountsEnabled": client.service_account and not client.public,
        "redirectUris": list(client.redirect_uris),
        "attributes": CLIENT_ATTRIBUTES,
        "protocolMappers": _mappers(model),
    }
    if not client.public:
        rep["clientAuthenticatorType"] = "client-secret"
        if client.secret:
            rep["secret"] = client.secret
    return rep


def _mappers(model: AccessModel) -> list[dict[str, Any]]:
    out = []
    if model.resource_server.audience_mapper:
        out.append(
            {
                "name": f"audience-{model.resource_server.client_id}",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "consentRequired": False,
                "config": {
                    "included.client.audience": model.resource_server.client_id,
                    "id.token.claim": "false",
                    "access.token.claim": "true",
                    "introspection.token.claim": "true",
                },
            }
        )
    if model.groups_claim:
        out.append(
            {
                "name": "groups",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-group-membership-mapper",
                "consentRequired": False,
                "config": {
                    "claim.name": "groups",
                    "full.path": "true",
                    "id.token.claim": "true",
                    "access.token.claim": "true",
                    "userinfo.token.claim": "true",
                },
            }
        )
    return out
