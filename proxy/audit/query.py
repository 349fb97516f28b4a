"""Answers from recorded reach: who touched a hub/cluster/project, what a subject touched, refusals."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from proxy.audit.event import Reach

FORWARDED = frozenset({"allowed", "narrowed"})
REFUSED = frozenset({"denied", "invalid", "unauthenticated", "refused"})
MAX_SAMPLES = 5


@dataclass(frozen=True)
class Window:
    """A time window as RFC 3339 UTC strings; events compare as text (same fixed format)."""

    since: str | None = None
    until: str | None = None

    def holds(self, when: str) -> bool:
        """Whether an event time lies in [since, until)."""
        return (self.since is None or when >= self.since) and (self.until is None or when < self.until)


@dataclass
class Row:
    """One aggregated answer line."""

    key: tuple[str, ...]
    count: int = 0
    first: str = ""
    last: str = ""
    samples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, when: str, **samples: str | None) -> None:
        """Count one event and keep a few distinct sample values per column."""
        self.count += 1
        self.first = when if not self.first or when < self.first else self.first
        self.last = max(self.last, when)
        for name, value in samples.items():
            kept = self.samples.setdefault(name, [])
            if value and value not in kept and len(kept) < MAX_SAMPLES:
                kept.append(value)


def _reach_of(event: dict[str, Any]) -> Reach:
    return Reach.from_json(event.get("reach"))


def _via(reach: Reach, cluster: str | None) -> str:
    """How a reach covers the target: hub-wide, cluster-wide, or through projects."""
    if reach.hub_wide:
        return "hub-wide"
    if cluster is not None and cluster in reach.clusters:
        return "cluster-wide"
    return "project" if cluster is not None else "clusters/projects"


def who_accessed(
    events: Iterable[dict[str, Any]],
    *,
    hub: str | None,
    cluster: str | None = None,
    project: str | None = None,
    window: Window = Window(),
) -> list[Row]:
    """Subjects whose forwarded requests could touch the target in the window (wider reach counts)."""
    rows: dict[tuple[str, ...], Row] = {}
    for event in events:
        when = str(event.get("time") or "")
        if event.get("decision") not in FORWARDED or not window.holds(when):
            continue
        if hub is not None and event.get("hub") != hub:
            continue
        reach = _reach_of(event)
        if not reach.touches(cluster, project):
            continue
        key = (str(event.get("hub")), str(event.get("subject")), _via(reach, cluster))
        row = rows.setdefault(key, Row(key))
        unverified = event.get("unverified") or {}
        row.add(
            when,
            username=event.get("username"),
            client=event.get("client"),
            grafana_user=unverified.get("grafana_user"),
            route=event.get("route"),
        )
    return sorted(rows.values(), key=lambda r: (r.key, r.first))


def subject_matches(event: dict[str, Any], subject: str) -> bool:
    """A subject is named by its `sub`/client id or its username."""
    return subject in (event.get("subject"), event.get("username"))


def accessed_by(events: Iterable[dict[str, Any]], subject: str, *, window: Window = Window()) -> list[Row]:
    """Everything one subject's forwarded requests could touch, per hub and scope."""
    rows: dict[tuple[str, ...], Row] = {}
    for event in events:
        when = str(event.get("time") or "")
        if event.get("decision") not in FORWARDED or not window.holds(when):
            continue
        if not subject_matches(event, subject):
            continue
        hub = str(event.get("hub"))
        for scope in _scopes(_reach_of(event)):
            key = (hub, str(event.get("subject")), scope)
            rows.setdefault(key, Row(key)).add(
                when, route=event.get("route"), query=_first(event.get("query"))
            )
    return sorted(rows.values(), key=lambda r: r.key)


def _scopes(reach: Reach) -> Iterator[str]:
    if reach.hub_wide:
        yield "hub-wide"
        return
    for cluster in sorted(set(reach.clusters)):
        yield f"cluster {cluster}"
    for cluster, projects in sorted(reach.projects.items()):
        if cluster in reach.clusters:
            continue
        for project in sorted(set(projects)):
            yield f"project {cluster}/{project}"


def refusals(
    events: Iterable[dict[str, Any]], *, subject: str | None = None, window: Window = Window()
) -> list[Row]:
    """Refused requests per subject and decision (401 floods arrive as per-minute counts)."""
    rows: dict[tuple[str, ...], Row] = {}
    for event in events:
        when = str(event.get("time") or "")
        decision = str(event.get("decision"))
        status = event.get("status")
        refused = decision in REFUSED or (
            decision not in FORWARDED and isinstance(status, int) and status >= 400
        )
        if not refused or not window.holds(when):
            continue
        if subject is not None and not subject_matches(event, subject):
            continue
        unverified = event.get("unverified") or {}
        who = str(event.get("subject") or f"(unauthenticated {unverified.get('source')})")
        key = (str(event.get("hub")), who, decision, str(status))
        row = rows.setdefault(key, Row(key))
        # An aggregated 401 line stands for `count` refusals.
        row.count += max(int(event.get("count") or 1), 1) - 1
        row.add(when, reason=event.get("reason"), route=event.get("route"))
    return sorted(rows.values(), key=lambda r: r.key)


def _first(value: Any) -> str | None:
    if isinstance(value, list) and value:
        return str(value[0])
    return None
