"""Checks of time-bounded grants: readable windows, grants that ended or end soon, and bounded
grants that another path (a wider grant, a group the user is in) still grants without bound."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from proxy.policies.model import AccessModel, Grant, Grantee, grant_window
from proxy.policies.problems import Problem
from proxy.policies.window import WindowError, zone

At = Callable[..., int]


def covering(model: AccessModel, resource: str) -> set[str]:
    """The resource names whose holder also holds `resource` (itself, its cluster, the hub, HUB)."""
    r = model.resources
    out = {resource, r.hub, r.top}
    for cluster in model.clusters:
        for project in cluster.projects:
            if resource == r.project(cluster.name, project):
                out.add(r.cluster(cluster.name))
    return out


def unbounded_paths(model: AccessModel, grant: Grant, resource: str) -> list[str]:
    """How else the grantee holds `resource` without an end: wider or equal unbounded grants of
    the grantee itself or of a group a (declared) user belongs to."""
    principals = {grant.grantee}
    if grant.grantee.kind == "user":
        user = next((u for u in model.users if u.username == grant.grantee.name), None)
        principals |= {Grantee("group", g) for g in (user.groups if user else ())}
    wider = covering(model, resource)
    out = []
    for other in model.grants:
        if other.window.bounded or other.grantee not in principals:
            continue
        hit = sorted(wider & set(model.grant_resources(other)))
        if hit:
            via = "" if other.grantee == grant.grantee else f" through group {other.grantee.name}"
            out.append(f"{hit[0]} (unbounded grant of {other.grantee.kind} {other.grantee.name}{via})")
    return out


def time_problems(
    model: AccessModel,
    raw_grants: list[Mapping[str, Any]],
    raw_top: Mapping[str, Any],
    at: At,
    file: str,
    now: datetime | None = None,
) -> Iterable[Problem]:
    """Errors for unreadable windows and zones; warnings for ended, ending and shadowed grants."""
    now = now or datetime.now(UTC)
    for key in ("time_zone", "keycloak_time_zone"):
        if key in raw_top:
            try:
                zone(str(raw_top[key]))
            except WindowError as exc:
                yield Problem(file, at(key), "error", str(exc))
    for i, (grant, raw) in enumerate(zip(model.grants, raw_grants, strict=True)):
        if not any(k in raw for k in ("from", "until", "time_zone")):
            continue
        try:
            window = grant_window(raw, model.time_zone)
        except WindowError as exc:
            key = next((k for k in ("until", "from", "time_zone") if k in raw), "until")
            yield Problem(file, at("grants", i, key), "error", str(exc))
            continue
        who = f"{grant.grantee.kind} {grant.grantee.name}"
        if window.ended(now):
            msg = f"grant of {who} ended ({window.describe()}); remove it"
            yield Problem(file, at("grants", i, "until"), "warning", msg)
        elif window.ends_soon(now):
            msg = f"grant of {who} ends within 14 days ({window.describe()})"
            yield Problem(file, at("grants", i, "until"), "warning", msg)
        if not window.bounded:
            continue
        for resource in model.grant_resources(grant):
            for path in unbounded_paths(model, grant, resource):
                msg = f"bounded grant of {who} on {resource} is still granted without bound by {path}"
                yield Problem(file, at("grants", i), "warning", msg)
