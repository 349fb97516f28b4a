"""Keycloak's policy evaluation for one resource at a time (docs/keycloak.md)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from keycloak_emulator import timepolicy
from keycloak_emulator.store import Client, Policy, Realm, Resource, ResourceServer, User


@dataclass(frozen=True)
class Identity:
    """Who is evaluated: `id` is the user id, or the client's id for its own service account."""

    id: str
    user: User
    client: Client
    claims: dict[str, Any] = field(default_factory=dict)
    # When the evaluation happens (epoch seconds): time policies compare against it.
    now: float | None = None


def identity_of(user: User, client: Client, claims: dict[str, Any], now: float | None = None) -> Identity:
    """Build the identity of a verified token (`KeycloakIdentity`, docs/keycloak.md)."""
    is_resource_server = user.service_account_client == client.id
    return Identity(
        id=client.id if is_resource_server else user.id, user=user, client=client, claims=claims, now=now
    )


@dataclass(frozen=True)
class ResourcePermission:
    """One resource (None for a scope-only permission) with the scope ids asked of it."""

    resource: Resource | None
    scope_ids: tuple[str, ...]


@dataclass
class PermissionIndex:
    """The resource server's permissions by linked resource, built once per UMA call.

    Keycloak finds applicable permissions with indexed queries (`findByResource`,
    `findByScopes`); scanning every permission for each of thousands of resources would make the
    emulator, not the modelled server, the slow part of a large-realm benchmark.
    """

    order: dict[str, int] = field(default_factory=dict)
    by_resource: dict[str, list[Policy]] = field(default_factory=dict)
    unlinked_scope: list[Policy] = field(default_factory=list)
    typed: dict[str, list[Policy]] = field(default_factory=dict)

    @classmethod
    def of(cls, rs: ResourceServer) -> PermissionIndex:
        """Index every permission of `rs`, remembering store order."""
        index = cls()
        for position, perm in enumerate(rs.policies.values()):
            index.order[perm.id] = position
            if perm.type not in ("scope", "resource"):
                continue
            for rid in dict.fromkeys(perm.resource_ids):
                index.by_resource.setdefault(rid, []).append(perm)
            if perm.type == "scope" and not perm.resource_ids and perm.resource_type is None:
                index.unlinked_scope.append(perm)
            if perm.type == "resource" and perm.resource_type is not None:
                index.typed.setdefault(perm.resource_type, []).append(perm)
        return index


def evaluate(
    realm: Realm,
    rs: ResourceServer,
    identity: Identity,
    asked: ResourcePermission,
    index: PermissionIndex | None = None,
) -> set[str] | None:
    """Scope ids granted on the resource, or None when the resource is not granted at all."""
    wanted = set(asked.scope_ids)
    if rs.enforcement_mode == "DISABLED":
        return wanted
    if asked.resource is not None and asked.resource.owner in (identity.id, identity.user.id):
        # ResourcePermission.isGranted(): the owner of a user-owned resource always holds it.
        return wanted
    applicable = list(_applicable(index or PermissionIndex.of(rs), asked))
    if not applicable:
        return wanted if rs.enforcement_mode == "PERMISSIVE" else None
    decided = []
    for perm in applicable:
        granted = _permission_granted(realm, rs, perm, identity)
        if granted is not None:
            decided.append((perm, granted))
    if not decided:
        return None
    return _combine(asked, wanted, decided, rs.decision_strategy)


def _applicable(index: PermissionIndex, asked: ResourcePermission) -> Iterable[Policy]:
    wanted = set(asked.scope_ids)
    resource = asked.resource
    candidates: dict[str, Policy] = {p.id: p for p in index.unlinked_scope}
    if resource is not None:
        candidates.update((p.id, p) for p in index.by_resource.get(resource.id, []))
        if resource.type:
            candidates.update((p.id, p) for p in index.typed.get(resource.type, []))
    for perm in sorted(candidates.values(), key=lambda p: index.order[p.id]):
        if perm.type == "scope":
            linked = resource is not None and resource.id in perm.resource_ids
            unlinked = not perm.resource_ids and perm.resource_type is None
            if (linked or unlinked) and wanted & set(perm.scope_ids):
                yield perm
        elif perm.type == "resource" and resource is not None:
            typed = perm.resource_type is not None and perm.resource_type == resource.type
            if resource.id in perm.resource_ids or typed:
                yield perm


def _permission_granted(realm: Realm, rs: ResourceServer, perm: Policy, identity: Identity) -> bool | None:
    # A permission without policies records no decision (docs/keycloak.md).
    results = [
        _policy_permits(realm, rs, rs.policies[p], identity, frozenset())
        for p in perm.policy_ids
        if p in rs.policies
    ]
    if not results:
        return None
    return _strategy(perm.decision_strategy, results)


def _strategy(strategy: str, results: list[bool]) -> bool:
    permits = sum(results)
    if strategy == "AFFIRMATIVE":
        return permits > 0
    if strategy == "CONSENSUS":
        return permits > len(results) - permits
    return permits == len(results)


def _policy_permits(
    realm: Realm, rs: ResourceServer, policy: Policy, identity: Identity, seen: frozenset[str]
) -> bool:
    if policy.id in seen:
        return False
    matched = _matches(realm, rs, policy, identity, seen | {policy.id})
    # grant() honours logic; no effect means DENY, which NEGATIVE turns into PERMIT.
    return matched if policy.logic != "NEGATIVE" else not matched


def _matches(
    realm: Realm, rs: ResourceServer, policy: Policy, identity: Identity, seen: frozenset[str]
) -> bool:
    if policy.type == "client":
        return identity.client.id in policy.clients
    if policy.type == "user":
        return identity.id in policy.users
    if policy.type == "group":
        return _group_matches(realm, policy, identity)
    if policy.type == "aggregate":
        results = [
            _policy_permits(realm, rs, rs.policies[p], identity, seen)
            for p in policy.policy_ids
            if p in rs.policies
        ]
        return bool(results) and _strategy(policy.decision_strategy, results)
    if policy.type == "time":
        return timepolicy.permits(policy.config, identity.now if identity.now is not None else time.time())
    if policy.type == "js":
        # Only the old "Default Policy" script is emulated: it always grants.
        return "$evaluation.grant()" in policy.config.get("code", "")
    return False


def _group_matches(realm: Realm, policy: Policy, identity: Identity) -> bool:
    if policy.groups_claim:
        raw = identity.claims.get(policy.groups_claim, [])
        held = [str(v) for v in (raw if isinstance(raw, list) else [raw])]
    else:
        held = [realm.group_path(g) for g in identity.user.group_ids if g in realm.groups]
    for ref in policy.groups:
        group = realm.groups.get(ref.id)
        if group is None:
            continue
        path = realm.group_path(group.id)
        for value in held:
            if value in (path, group.name):
                return True
            # GroupPolicyProvider.evaluate: `group.equals(path) || (extendChildren &&
            # group.startsWith(path))`, a plain prefix: `/ops` with children matches `/ops-interns`.
            if ref.extend_children and value.startswith(path):
                return True
    return False


def _combine(
    asked: ResourcePermission,
    wanted: set[str],
    decided: list[tuple[Policy, bool]],
    rs_strategy: str,
) -> set[str] | None:
    # DecisionPermissionCollector.onComplete, as transcribed in docs/keycloak.md.
    resource = asked.resource
    granted: set[str] = set()
    denied: set[str] = set()
    denied_typed: set[str] = set()
    any_deny = False
    by_resource_perm = False
    for perm, ok in decided:
        contains = resource is not None and resource.id in perm.resource_ids
        if ok:
            granted |= (wanted & set(perm.scope_ids)) if perm.type == "scope" else set(wanted)
            if not by_resource_perm:
                by_resource_perm = perm.type != "scope" and contains
            continue
        any_deny = True
        if perm.type == "resource":
            if contains or not by_resource_perm:
                if perm.resource_type is not None or (resource is not None and resource.type):
                    denied_typed |= wanted
                else:
                    denied |= wanted
        elif contains or not perm.resource_ids:
            denied |= set(perm.scope_ids)
    if rs_strategy == "AFFIRMATIVE":
        denied -= granted
    if by_resource_perm:
        denied_typed -= granted
        denied |= denied_typed
    if not denied:
        denied |= denied_typed
    granted -= denied
    if not by_resource_perm and not granted and wanted:
        return None
    if any_deny and not granted:
        return None
    return granted
