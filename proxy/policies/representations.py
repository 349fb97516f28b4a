"""The Keycloak admin representations `policies apply` writes (pure: no I/O)."""

from __future__ import annotations

from typing import Any

from proxy.policies import names
from proxy.policies.desired import Permission, Policy
from proxy.policies.live import config_list, members

SCOPE = names.SCOPE


def policy_body(
    name: str, kind: str, description: str, who: set[str], config: tuple[tuple[str, str], ...] = ()
) -> dict[str, Any]:
    """The policy representation `apply` writes: group, user, client, time or aggregate."""
    body: dict[str, Any] = {
        "name": name,
        "description": description,
        "type": kind,
        "logic": "POSITIVE",
        "decisionStrategy": "UNANIMOUS",
    }
    if kind == "group":
        body["groups"] = [{"path": p, "extendChildren": False} for p in sorted(who)]
    elif kind == "time":
        # TimePolicyRepresentation: `notBefore`/`notOnOrAfter` become config `nbf`/`noa`.
        values = dict(config)
        body.update({"notBefore": values.get("nbf"), "notOnOrAfter": values.get("noa")})
    elif kind == "aggregate":
        # Both the grantee's policy and the time policy must hold (UNANIMOUS, as set above).
        body["policies"] = [m for m in sorted(who, key=lambda m: m.startswith("time-"))]
    else:
        body[f"{kind}s"] = sorted(who)
    return body


def permission_body(perm: Permission, description: str, policies: list[str]) -> dict[str, Any]:
    """The scope permission (AFFIRMATIVE: any of its policies grants) for one resource."""
    return {
        "name": perm.name,
        "description": description,
        "type": "scope",
        "logic": "POSITIVE",
        "decisionStrategy": "AFFIRMATIVE",
        "resources": [perm.resource],
        "scopes": [SCOPE],
        "policies": policies,
    }


def description(current: dict[str, Any], ours: str) -> str:
    """Keep a marked description as it is; mark an existing one; else ours."""
    existing = str(current.get("description") or "")
    if names.is_marked_description(existing):
        return existing
    return names.described(existing) if existing else ours


def set_diff(label: str, have: set[str], want: set[str]) -> str:
    """A plan line's `label += […], label -= […]` (or "mark as managed" when equal)."""
    parts = []
    if want - have:
        parts.append(f"{label} += {sorted(want - have)}")
    if have - want:
        parts.append(f"{label} -= {sorted(have - want)}")
    return ", ".join(parts) or "mark as managed"


def live_members(current: dict[str, Any]) -> set[str]:
    """What a live policy says: members, a time policy's `nbf=`/`noa=`, an aggregate's policies."""
    if current.get("type") == "time":
        config = current.get("config") or {}
        return {f"{k}={config[k]}" for k in ("nbf", "noa") if config.get(k)}
    if current.get("type") == "aggregate":
        return {str(p) for p in config_list(current, "applyPolicies")}
    return members(current)


def wanted_members(policy: Policy) -> set[str]:
    """What the model says a policy holds, spelled as `live_members` reads a live one."""
    if policy.type == "time":
        return {f"{k}={v}" for k, v in policy.config}
    return set(policy.members)


def dropped_policies(perm: Permission, have: list[str]) -> set[str]:
    """Policies of the grantee this permission must no longer name."""
    own = perm.grantee_policy
    if own is None:
        return set()
    return {p for p in have if p not in perm.policies and (p == own or p.startswith(f"{own}-time-"))}
