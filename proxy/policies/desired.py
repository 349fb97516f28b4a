"""The Keycloak objects a model needs, by name, in the portal's naming (docs/policies.md)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.policies import names
from proxy.policies.model import AccessModel, Grantee
from proxy.policies.window import Window


@dataclass(frozen=True)
class Policy:
    """A group, user, client, time or aggregate policy; `members` are group paths, usernames or
    client ids (for an aggregate: the names of the policies that must all hold); `config` holds a
    time policy's `nbf`/`noa`."""

    name: str
    type: str
    members: tuple[str, ...]
    description: str
    config: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Permission:
    """A scope permission on one resource, AFFIRMATIVE over its policies."""

    name: str
    resource: str
    policies: tuple[str, ...]
    description: str
    # The grantee whose own unbounded policy (and stale windows) `apply` removes from this
    # permission when the grant is bounded; None for the portal's permissions.
    grantee_policy: str | None = None


@dataclass(frozen=True)
class DesiredState:
    """Everything `apply` and `export` write for one model."""

    scope: str
    resources: tuple[str, ...]
    groups: tuple[str, ...]
    policies: tuple[Policy, ...]
    permissions: tuple[Permission, ...]


def desired_state(model: AccessModel) -> DesiredState:
    """Derive scope, resources, portal groups, policies and permissions from a model."""
    resources = tuple(model.resource_names())
    portal_groups = tuple(names.portal_group(r) for r in resources)
    policies = [_grantee_policy(g) for g in model.grantees()]
    policies += [
        Policy(
            name=group,
            type="group",
            members=(f"/{group}",),
            description=names.described(f"members of group {group} may read {resource}"),
        )
        for resource, group in zip(resources, portal_groups, strict=True)
    ]
    # The portal's permission per resource holds its group policy (other policies the portal adds
    # are kept by `apply`); each grant of the file is a permission of its own, so removing a grant
    # removes exactly its permission. Several permissions per resource need AFFIRMATIVE (§4.5).
    permissions = [
        Permission(
            name=names.permission(resource),
            resource=resource,
            policies=(names.portal_group(resource),),
            description=names.described(f"members of {names.portal_group(resource)} read {resource}"),
        )
        for resource in resources
    ]
    # A bounded grant is an aggregate that needs both the grantee's policy and the time window
    # (UNANIMOUS); the permission then names the aggregate instead of the grantee's policy.
    bounded: dict[str, Policy] = {}
    for resource, grantee, windows in model.resource_windows():
        held = []
        for window in windows:
            if not window.bounded:
                held.append(grantee.policy_name)
                continue
            timed = time_policy(window, model.keycloak_time_zone)
            both = aggregate_policy(grantee, window, timed)
            bounded.setdefault(timed.name, timed)
            bounded.setdefault(both.name, both)
            held.append(both.name)
        permissions.append(
            Permission(
                name=names.grant_permission(resource, grantee.kind, grantee.name),
                resource=resource,
                policies=tuple(held),
                description=names.described(f"{grantee.kind} {grantee.name} reads {resource}"),
                grantee_policy=grantee.policy_name,
            )
        )
    # Keycloak resolves an aggregate's policies by name: time policies first, then aggregates.
    policies += sorted(bounded.values(), key=lambda p: (p.type != "time", p.name))
    return DesiredState(
        scope=names.SCOPE,
        resources=resources,
        groups=(*model.groups, *portal_groups),
        policies=tuple(policies),
        permissions=tuple(permissions),
    )


def _grantee_policy(grantee: Grantee) -> Policy:
    member = f"/{grantee.name}" if grantee.kind == "group" else grantee.name
    return Policy(
        name=grantee.policy_name,
        type=grantee.kind,
        members=(member,),
        description=names.described(f"{grantee.kind} {grantee.name}"),
    )


def time_policy(window: Window, server_zone: str) -> Policy:
    """The time policy of a window, its dates written in the Keycloak server's zone."""
    nbf, noa = window.keycloak(server_zone)
    config = tuple((k, v) for k, v in (("nbf", nbf), ("noa", noa)) if v is not None)
    return Policy(
        name=window.policy_name(server_zone),
        type="time",
        members=(),
        description=names.described(f"time window {window.describe()}"),
        config=config,
    )


def aggregate_policy(grantee: Grantee, window: Window, timed: Policy) -> Policy:
    """The grantee's policy and the time policy, both required."""
    return Policy(
        name=f"{grantee.policy_name}-{timed.name}",
        type="aggregate",
        members=(grantee.policy_name, timed.name),
        description=names.described(f"{grantee.kind} {grantee.name} {window.describe()}"),
    )
