"""What a Keycloak realm holds now, read through the gateway, keyed by name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from proxy.policies import names
from proxy.policies.gateway import Gateway
from proxy.policies.model import AccessModel


@dataclass
class LiveState:
    """The realm's current objects relevant to one model."""

    rs_uuid: str | None
    rs_client: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    scopes: set[str] = field(default_factory=set)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, str | None] = field(default_factory=dict)
    user_paths: dict[str, set[str]] = field(default_factory=dict)
    clients: dict[str, str | None] = field(default_factory=dict)

    @property
    def authz_enabled(self) -> bool:
        """Whether the resource server exists with authorization services on."""
        return bool(self.rs_client.get("authorizationServicesEnabled"))


def read(gw: Gateway, model: AccessModel) -> LiveState:
    """Read everything `plan` compares: authz objects, groups, declared users and clients."""
    rs_uuid = gw.client_uuid(model.resource_server.client_id)
    state = LiveState(rs_uuid=rs_uuid)
    if rs_uuid is not None:
        state.rs_client = gw.client(rs_uuid)
        if state.authz_enabled:
            _read_authz(gw, rs_uuid, state)
    state.groups = {str(g["name"]): g for g in gw.top_groups()}
    for user in model.users:
        uid = gw.user_uuid(user.username)
        state.users[user.username] = uid
        state.user_paths[user.username] = gw.user_group_paths(uid) if uid else set()
    state.clients = {c.client_id: gw.client_uuid(c.client_id) for c in model.clients}
    return state


def _read_authz(gw: Gateway, cid: str, state: LiveState) -> None:
    state.settings = gw.settings(cid)
    state.scopes = {str(s["name"]) for s in gw.scopes(cid)}
    state.resources = {str(r["name"]): r for r in gw.resources(cid) if _server_owned(r, state)}
    ids = {str(p["name"]): p for p in gw.policies(cid)}
    for rep in state.settings.get("policies", []):
        listed = ids.get(str(rep["name"]))
        if listed is not None:
            state.policies[str(rep["name"])] = {**rep, "id": listed["id"]}


def _server_owned(resource: dict[str, Any], state: LiveState) -> bool:
    # By owner id only: `owner.name` of a user-owned resource is that user's username, and a user
    # may be named like the client; such a resource must never be adopted or pruned.
    owner = resource.get("owner")
    return isinstance(owner, dict) and state.rs_uuid is not None and owner.get("id") == state.rs_uuid


def config_list(policy: dict[str, Any], key: str) -> list[Any]:
    """A JSON-array config value of an exported policy, decoded."""
    raw = (policy.get("config") or {}).get(key)
    return list(json.loads(raw)) if raw else []


def members(policy: dict[str, Any]) -> set[str]:
    """Group paths, usernames or client ids a policy names (from the export form)."""
    kind = policy.get("type")
    if kind == "group":
        return {str(g.get("path")) for g in config_list(policy, "groups")}
    if kind == "user":
        return {str(u) for u in config_list(policy, "users")}
    if kind == "client":
        return {str(c) for c in config_list(policy, "clients")}
    return set()


def is_marked_resource(resource: dict[str, Any]) -> bool:
    """Whether `apply` created (or adopted) this resource or group."""
    values = (resource.get("attributes") or {}).get(names.MANAGED_BY_KEY) or []
    return names.MANAGED_BY_VALUE in values
