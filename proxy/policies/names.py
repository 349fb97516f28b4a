"""Keycloak object names shared with the Go proxy and the telemetry portal (docs/policies.md).

Resource names themselves come from `proxy.naming`, the module the proxy uses too, so both
follow the same `PROXY_HUB_KEY` / `PROXY_CLUSTER_KEY` / `PROXY_PROJECT_KEY`.
"""

from __future__ import annotations

from typing import Final

from proxy.naming import SCOPE

MANAGED_BY_KEY: Final = "managed-by"
MANAGED_BY_VALUE: Final = "prom-keycloak-proxy"
DESCRIPTION_PREFIX: Final = "[managed-by: prom-keycloak-proxy]"
# Keycloak stores resource, policy and group names and descriptions in VARCHAR(255) columns; a
# longer value makes the admin API answer 500 (`jpa-changelog-authz-2.0.0.xml`).
MAX_NAME_LENGTH: Final = 255
_ELLIPSIS: Final = "…"


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


__all__ = [
    "DESCRIPTION_PREFIX",
    "MANAGED_BY_KEY",
    "MANAGED_BY_VALUE",
    "MAX_NAME_LENGTH",
    "SCOPE",
]
