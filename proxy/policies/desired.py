"""The Keycloak objects a model needs, by name, in the portal's naming (SPEC §7, reference §7.2)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.policies import names
from proxy.policies.model import AccessModel, Grantee


@dataclass(frozen=True)
class Policy:
    """A group, user or client policy; `members` are group paths, usernames or client ids."""

    name: str
    type: str
    members: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Permission:
    """A scope permission on one resource, AFFIRMATIVE over its policies."""

    name: str
    resource: str
    policies: tuple[str, ...]
    description: str


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
    permissions += [
        Permission(
            name=names.grant_permission(resource, grantee.kind, grantee.name),
            resource=resource,
            policies=(grantee.policy_name,),
            description=names.described(f"{grantee.kind} {grantee.name} reads {resource}"),
        )
        for resource, grantees in model.resource_grantees()
        for grantee in grantees
    ]
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
