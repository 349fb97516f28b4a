"""Who holds which resource, since and until when — read from authorization settings in their
export form, so the file (through `export`) and a live realm are read by the same code."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from proxy.policies.window import UNBOUNDED, Window, from_keycloak

PRINCIPAL_TYPES = {"user": "users", "client": "clients", "group": "groups"}


@dataclass(frozen=True)
class Holding:
    """One principal holding one resource through one permission, within a window."""

    kind: str
    principal: str
    resource: str
    window: Window
    via: str
    extend: bool = False

    @property
    def key(self) -> tuple[str, str, str, datetime | None, datetime | None]:
        """What drift compares: who, what, and the window's instants."""
        return (self.kind, self.principal, self.resource, self.window.start, self.window.end)


def _config_list(rep: Mapping[str, Any], key: str) -> list[Any]:
    raw = (rep.get("config") or {}).get(key)
    if not raw:
        return []
    value = json.loads(raw)
    return list(value) if isinstance(value, list) else [value]


def _principals(rep: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    kind = str(rep.get("type"))
    if kind == "group":
        return [
            (kind, str(g.get("path", "")).lstrip("/"), bool(g.get("extendChildren")))
            for g in _config_list(rep, "groups")
        ]
    if kind in PRINCIPAL_TYPES:
        return [(kind, str(m), False) for m in _config_list(rep, PRINCIPAL_TYPES[kind])]
    return [("policy", f"{rep.get('name')} ({kind})", False)]


def _window_of(reps: list[Mapping[str, Any]], server_zone: str, show_zone: str) -> Window:
    """The intersection of time policies' windows (all must hold in a UNANIMOUS aggregate)."""
    starts, ends = [], []
    for rep in reps:
        config = rep.get("config") or {}
        w = from_keycloak(config.get("nbf"), config.get("noa"), server_zone, show_zone)
        if w.start:
            starts.append(w.start)
        if w.end:
            ends.append(w.end)
    start, end = (max(starts) if starts else None), (min(ends) if ends else None)
    shown = Window(start, end, show_zone)
    return Window(start, end, show_zone, shown.display("from") or None, shown.display("until") or None)


def _expand(
    name: str, index: Mapping[str, Mapping[str, Any]], server_zone: str, show_zone: str
) -> list[tuple[str, str, bool, Window]]:
    rep = index.get(name)
    if rep is None:
        return [("policy", f"{name} (missing)", False, UNBOUNDED)]
    kind = rep.get("type")
    if kind == "time":
        return [("policy", f"{name} (time, anyone)", False, _window_of([rep], server_zone, show_zone))]
    if kind != "aggregate":
        return [(k, p, e, UNBOUNDED) for k, p, e in _principals(rep)]
    children = [index.get(str(c)) for c in _config_list(rep, "applyPolicies")]
    times = [c for c in children if c is not None and c.get("type") == "time"]
    others = [c for c in children if c is not None and c.get("type") in PRINCIPAL_TYPES]
    shaped = (
        rep.get("decisionStrategy", "UNANIMOUS") == "UNANIMOUS"
        and rep.get("logic", "POSITIVE") == "POSITIVE"
        and len(times) + len(others) == len(children)
        and len(others) == 1
    )
    if not shaped:
        return [("policy", f"{name} (aggregate)", False, UNBOUNDED)]
    window = _window_of(times, server_zone, show_zone) if times else UNBOUNDED
    return [(k, p, e, window) for k, p, e in _principals(others[0])]


def holdings(
    policies: Iterable[Mapping[str, Any]], *, server_zone: str = "UTC", show_zone: str = "UTC"
) -> list[Holding]:
    """Every (principal, resource, window) the permissions among `policies` grant."""
    reps = list(policies)
    index = {str(r.get("name")): r for r in reps}
    out: list[Holding] = []
    for perm in reps:
        if perm.get("type") not in ("scope", "resource"):
            continue
        resources = [str(r) for r in _config_list(perm, "resources")]
        for name in _config_list(perm, "applyPolicies"):
            for kind, principal, extend, window in _expand(str(name), index, server_zone, show_zone):
                out += [Holding(kind, principal, r, window, str(perm.get("name")), extend) for r in resources]
    return out
