"""Keycloak object names shared with the Go proxy and the telemetry portal (SPEC §4.1, §7)."""

from __future__ import annotations

from typing import Final

SCOPE: Final = "GET"
TOP_HUB: Final = "HUB"
MANAGED_BY_KEY: Final = "managed-by"
MANAGED_BY_VALUE: Final = "prom-keycloak-proxy"
DESCRIPTION_PREFIX: Final = "[managed-by: prom-keycloak-proxy]"
# Keycloak stores resource, policy and group names and descriptions in VARCHAR(255) columns; a
# longer value makes the admin API answer 500 (`jpa-changelog-authz-2.0.0.xml`).
MAX_NAME_LENGTH: Final = 255
_ELLIPSIS: Final = "…"


def hub_resource(hub: str) -> str:
    """Name of the resource granting everything on one hub."""
    return f"HUB-{hub}"


def cluster_resource(hub: str, cluster: str) -> str:
    """Name of the resource granting every namespace of one cluster."""
    return f"HUB-{hub}-CLUSTER-{cluster}"


def project_resource(hub: str, cluster: str, project: str) -> str:
    """Name of the resource granting one namespace of one cluster."""
    return f"HUB-{hub}-CLUSTER-{cluster}-PROJECT-{project}"


def portal_group(resource: str) -> str:
    """Realm group (and its group policy) the portal creates for a resource."""
    return f"{resource}-{SCOPE}"


def permission(resource: str) -> str:
    """Scope permission the portal creates for a resource."""
    return f"{resource}-{SCOPE}-permission"


def grant_permission(resource: str, kind: str, name: str) -> str:
    """Scope permission giving one grantee one resource (prunable grant by grant)."""
    return f"{resource}-{SCOPE}-{kind}-{name}-permission"


def grantee_policy(kind: str, name: str) -> str:
    """Policy matching one grantee of the file: `group-…`, `user-…` or `client-…`."""
    return f"{kind}-{name}"


def described(text: str) -> str:
    """A policy/permission description carrying the marker `apply` recognises as its own, cut to
    Keycloak's 255 characters (the marker at its start survives the cut)."""
    full = f"{DESCRIPTION_PREFIX} {text}"
    if len(full) <= MAX_NAME_LENGTH:
        return full
    return full[: MAX_NAME_LENGTH - len(_ELLIPSIS)] + _ELLIPSIS


def is_marked_description(description: str | None) -> bool:
    """Whether a policy or permission description says `apply` created it."""
    return bool(description) and str(description).startswith(DESCRIPTION_PREFIX)
