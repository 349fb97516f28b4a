"""The UMA grant: `permission` parsing, resolution to resources and the answer (docs/keycloak.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keycloak_emulator.errors import KeycloakError
from keycloak_emulator.evaluation import Identity, PermissionIndex, ResourcePermission, evaluate
from keycloak_emulator.store import Realm, Resource, ResourceServer

TYPE_PREFIXES = ("resource-type:", "resource-type-any:", "resource-type-instance:", "resource-type-owner:")


@dataclass(frozen=True)
class Granted:
    """One emitted `Permission{rsid, rsname, scopes}`."""

    resource: Resource | None
    scope_names: tuple[str, ...]

    def as_json(self, include_name: bool) -> dict[str, Any]:
        """The permission as `response_mode=permissions` lists it (empty scopes omitted)."""
        out: dict[str, Any] = {}
        if self.resource is not None:
            out["rsid"] = self.resource.id
            if include_name:
                out["rsname"] = self.resource.name
        if self.scope_names:
            out["scopes"] = list(self.scope_names)
        return out


def java_split(text: str, sep: str) -> list[str]:
    """`String.split` as Java does it: trailing empty strings are dropped."""
    if text == "":
        return [""]
    parts = text.split(sep)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def parse_permission(value: str) -> tuple[str, list[str] | None]:
    """Split `NAME#S1,S2` like `addPermissionsById`: a third `#` part is ignored (§1.3)."""
    parts = java_split(value, "#")
    if not parts:
        # "#" splits to an empty array: Keycloak fails with an unhandled exception.
        raise KeycloakError(500, "unknown_error", "For more on this error consult the server log.")
    if len(parts) == 1:
        return parts[0], None
    return parts[0], java_split(parts[1], ",")


def requested(
    realm: Realm, rs: ResourceServer, identity: Identity, permissions: Sequence[str], extra: list[str]
) -> list[ResourcePermission]:
    """Resolve `permission` parameters in request order, with §1.4's error rules."""
    collected: dict[str | None, set[str]] = {}
    order: list[str | None] = []
    # (name, owner) → resource, built once per call: the realm may hold thousands of resources.
    named = {(r.name, r.owner): r for r in rs.resources.values()}
    for raw in permissions:
        rsid, scope_names = parse_permission(raw)
        names = [*(scope_names or []), *extra]
        scope_ids = _scope_ids(rs, names)
        if not rsid:
            for res_id, sids in _scope_permissions(rs, scope_ids):
                _merge(collected, order, res_id, sids)
            continue
        resolved = False
        for resource in _resources(rs, named, identity, rsid):
            sids = set(resource.scope_ids) & scope_ids if names else set(resource.scope_ids)
            if not names or sids:
                _merge(collected, order, resource.id, sids)
                resolved = True
        if not resolved and not collected:
            raise KeycloakError(400, "invalid_resource", f"Resource with id [{rsid}] does not exist.")
    return [
        ResourcePermission(rs.resources[k] if k is not None else None, tuple(collected[k])) for k in order
    ]


def everything(rs: ResourceServer, identity: Identity) -> list[ResourcePermission]:
    """No `permission` parameter: every server-owned and identity-owned resource, all scopes."""
    return [
        ResourcePermission(r, tuple(r.scope_ids))
        for r in rs.resources.values()
        if r.owner in (rs.id, identity.id, identity.user.id)
    ]


def decide(
    realm: Realm, rs: ResourceServer, identity: Identity, asked: list[ResourcePermission]
) -> list[Granted]:
    """Evaluate each resource on its own and emit the granted ones in evaluation order."""
    out = []
    index = PermissionIndex.of(rs)
    for perm in asked:
        scopes = evaluate(realm, rs, identity, perm, index)
        if scopes is None:
            continue
        if perm.resource is None and not scopes:
            continue
        names = tuple(rs.scopes[s].name for s in perm.scope_ids if s in scopes)
        out.append(Granted(perm.resource, names))
    return out


def _scope_ids(rs: ResourceServer, names: list[str]) -> set[str]:
    if not names:
        return set()
    found = {s.id for n in names if (s := rs.scope_named(n)) is not None}
    if not found:
        shown = ", ".join(dict.fromkeys(names))
        raise KeycloakError(400, "invalid_scope", f"One of the given scopes [{shown}] is invalid")
    return found


def _resources(
    rs: ResourceServer, named: dict[tuple[str, str], Resource], identity: Identity, ref: str
) -> list[Resource]:
    """ATS `resolveResourcePermission`: an id, else the identity's own resource of that name AND
    the resource server's (both are evaluated; docs/keycloak.md), never a first-match shadowing."""
    if "-" in ref and ref in rs.resources:
        return [rs.resources[ref]]
    if ref.startswith(TYPE_PREFIXES):
        return []
    own = named.get((ref, identity.id)) or named.get((ref, identity.user.id))
    server = named.get((ref, rs.id))
    return list({r.id: r for r in (own, server) if r is not None}.values())


def _scope_permissions(rs: ResourceServer, scope_ids: set[str]) -> list[tuple[str | None, set[str]]]:
    if not scope_ids:
        return []
    # `findByScopes` (named query `findResourceIdByScope`) has no owner filter: every owner's
    # resources with the scope are evaluated, so the cost grows with the whole realm.
    hits: list[tuple[str | None, set[str]]] = [
        (r.id, set(r.scope_ids) & scope_ids) for r in rs.resources.values() if set(r.scope_ids) & scope_ids
    ]
    return hits or [(None, scope_ids)]


def _merge(
    collected: dict[str | None, set[str]], order: list[str | None], key: str | None, sids: set[str]
) -> None:
    if key not in collected:
        collected[key] = set()
        order.append(key)
    collected[key] |= sids
