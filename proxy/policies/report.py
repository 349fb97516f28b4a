"""`policies report`: who holds what, since and until when — per project or per person, from the
file or (read-only) from a live Keycloak, with drift between the two and shadowed bounded grants."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from proxy.policies import names
from proxy.policies.desired import desired_state
from proxy.policies.holdings import Holding, holdings
from proxy.policies.model import AccessModel
from proxy.policies.realm_json import authorization_settings
from proxy.policies.timechecks import covering

COLUMNS = ("cluster", "project", "kind", "principal", "from", "until", "status", "via")


@dataclass
class Report:
    """The rows to show, plus drift and warnings."""

    rows: list[Holding]
    only_live: list[Holding] = field(default_factory=list)
    only_file: list[Holding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def file_holdings(model: AccessModel) -> list[Holding]:
    """What the file grants, read back from the settings `export` writes for it."""
    settings = authorization_settings(desired_state(model))
    return holdings(settings["policies"], server_zone=model.keycloak_time_zone, show_zone=model.time_zone)


def live_holdings(model: AccessModel, policies: Iterable[Mapping[str, Any]]) -> list[Holding]:
    """What a live realm grants (its settings export, as `policies.live.read` fetched it)."""
    return holdings(policies, server_zone=model.keycloak_time_zone, show_zone=model.time_zone)


def _portal(h: Holding) -> bool:
    return h.kind == "group" and h.principal == names.portal_group(h.resource)


def build_report(
    model: AccessModel,
    held: list[Holding],
    memberships: Mapping[str, Iterable[str]],
    *,
    compare: list[Holding] | None = None,
    now: datetime | None = None,
    portal_groups: bool = False,
) -> Report:
    """Rows (portal groups without members hidden unless asked), drift against `compare`, warnings."""
    now = now or datetime.now(UTC)
    shown = [h for h in held if portal_groups or not _portal(h)]
    report = Report(rows=shown)
    if compare is not None:
        mine = {h.key for h in held if not _portal(h)}
        theirs = {h.key for h in compare if not _portal(h)}
        report.only_live = [h for h in held if not _portal(h) and h.key not in theirs]
        report.only_file = [h for h in compare if not _portal(h) and h.key not in mine]
    seen: set[str] = set()
    for h in held:
        if h.window.ended(now):
            msg = (
                f"{h.kind} {h.principal} on {h.resource}: ended {h.window.display('until')} ({h.window.zone})"
            )
        elif h.window.ends_soon(now):
            msg = (
                f"{h.kind} {h.principal} on {h.resource}: ends {h.window.display('until')} ({h.window.zone})"
            )
        else:
            msg = ""
        if msg and msg not in seen:
            seen.add(msg)
            report.warnings.append(msg)
    report.warnings += shadowed(model, held, memberships)
    return report


def shadowed(model: AccessModel, held: list[Holding], memberships: Mapping[str, Iterable[str]]) -> list[str]:
    """Bounded holdings that another path (wider grant, a group — parent groups included when the
    group policy extends to children —, a portal group) still grants without bound."""
    unbounded = [h for h in held if not h.window.bounded]
    out = []
    for h in held:
        if not h.window.bounded:
            continue
        wider = covering(model, h.resource)
        paths = [f"/{g.lstrip('/')}" for g in memberships.get(h.principal, ())] if h.kind == "user" else []
        if h.kind == "group":
            paths.append(f"/{h.principal}")
        for other in unbounded:
            if other.resource not in wider:
                continue
            same = other.kind == h.kind and other.principal == h.principal
            group = other.kind == "group" and any(
                p == f"/{other.principal}" or (other.extend and p.startswith(f"/{other.principal}"))
                for p in paths
            )
            if same or group:
                via = "" if same else f" through group {other.principal}"
                out.append(
                    f"{h.kind} {h.principal} on {h.resource} is bounded ({h.window.describe()}) but still "
                    f"granted without bound by {other.via}{via}"
                )
    return sorted(set(out))


def _status(h: Holding, now: datetime) -> str:
    if h.window.ended(now):
        return "ended"
    if h.window.start is not None and now < h.window.start:
        return "not started"
    if h.window.ends_soon(now):
        return "ends soon"
    return "active"


def _place(model: AccessModel, resource: str) -> tuple[str, str]:
    r = model.resources
    if resource == r.top:
        return "(all hubs)", ""
    if resource == r.hub:
        return f"(hub {model.hub})", ""
    for cluster in model.clusters:
        if resource == r.cluster(cluster.name):
            return cluster.name, "(all)"
        for project in cluster.projects:
            if resource == r.project(cluster.name, project):
                return cluster.name, project
    return resource, ""


def person_rows(held: list[Holding], members: Mapping[str, Iterable[str]]) -> list[Holding]:
    """Per person: group holdings repeated for each known member user, marked `via group …`."""
    by_group: dict[str, list[str]] = {}
    for user, groups in members.items():
        for g in groups:
            by_group.setdefault(g.strip("/"), []).append(user)
    out = list(held)
    for h in held:
        if h.kind == "group":
            out += [
                Holding("user", u, h.resource, h.window, f"group {h.principal}", h.extend)
                for u in by_group.get(h.principal, [])
            ]
    return out


def render(
    model: AccessModel, report: Report, out: TextIO, *, by: str, fmt: str, now: datetime | None = None
) -> None:
    """The report as a table or CSV; drift and warnings follow the table (CSV: a `drift` column)."""
    now = now or datetime.now(UTC)
    order = {r: i for i, r in enumerate(model.resource_names())}

    def record(h: Holding, drift: str = "") -> list[str]:
        cluster, project = _place(model, h.resource)
        row = [cluster, project, h.kind, h.principal, h.window.display("from"), h.window.display("until")]
        return [*row, _status(h, now), h.via, drift]

    def sort_key(h: Holding) -> tuple[object, ...]:
        place = (order.get(h.resource, len(order)), h.resource)
        who = (h.kind, h.principal)
        return (*place, *who) if by == "project" else (*who, *place)

    records = [record(h) for h in sorted(report.rows, key=sort_key)]
    drift = [record(h, "only in Keycloak") for h in sorted(report.only_live, key=sort_key)]
    drift += [record(h, "only in file") for h in sorted(report.only_file, key=sort_key)]
    columns = [*COLUMNS, "drift"]
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(records + drift)
        return
    _table(out, columns[:-1], [r[:-1] for r in records])
    if drift:
        out.write(f"\ndrift ({len(drift)}):\n")
        _table(out, columns, drift)
    for warning in report.warnings:
        out.write(f"warning: {warning}\n")


def _table(out: TextIO, columns: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for line in [columns, *rows]:
        out.write("  ".join(v.ljust(widths[i]) for i, v in enumerate(line)).rstrip() + "\n")
