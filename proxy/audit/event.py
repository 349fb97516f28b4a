"""The audit event: one JSON object per decision, the fields docs/ lists for the audit stream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy import logs
from proxy.logs import redact_text

SCHEMA = 1
# Queries and selectors are kept whole up to this many characters: enough for any dashboard
# panel, small enough that one abusive request cannot bloat the evidence store.
MAX_TEXT = 4096
MAX_TEXTS = 32
TRUNCATED = "…[truncated]"
UNVERIFIED_MAX = 256


def bounded(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """Redacted text cut to `limit` characters, marked when cut."""
    if text is None:
        return None
    clean = redact_text(text)
    return clean if len(clean) <= limit else clean[:limit] + TRUNCATED


def bounded_list(
    texts: Iterable[str], limit: int = MAX_TEXT, bound: Callable[[str | None, int], str | None] = bounded
) -> list[str]:
    """At most `MAX_TEXTS` bounded texts; a final marker says how many were left out."""
    out: list[str] = []
    extra = 0
    for text in texts:
        if len(out) < MAX_TEXTS:
            out.append(bound(text, limit) or "")
        else:
            extra += 1
    if extra:
        out.append(f"{TRUNCATED} {extra} more")
    return out


class BoundedMemo:
    """`bounded` remembered per text, for one thread (the audit writer's): dashboards, agents and
    sources repeat, and the redaction scan is most of an event's cost. Forgotten whenever the
    registered secrets change, so a secret registered later is still redacted."""

    def __init__(self, size: int = 4096) -> None:
        """Remember up to `size` texts (then start over)."""
        self.size = size
        self._memo: dict[tuple[str, int], str] = {}
        self._secrets: object = logs._secrets

    def __call__(self, text: str | None, limit: int = MAX_TEXT) -> str | None:
        """`bounded(text, limit)`."""
        if text is None:
            return None
        if logs._secrets is not self._secrets:
            self._memo.clear()
            self._secrets = logs._secrets
        key = (text, limit)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= self.size:
                self._memo.clear()
            found = self._memo[key] = bounded(text, limit) or ""
        return found


@dataclass(frozen=True)
class Reach:
    """What a forwarded request can touch: the whole hub, whole clusters, single projects."""

    hub_wide: bool = False
    clusters: tuple[str, ...] = ()
    projects: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """`{"hub_wide": …, "clusters": [...], "projects": {cluster: [...]}}`, sorted."""
        return {
            "hub_wide": self.hub_wide,
            "clusters": sorted(set(self.clusters)),
            "projects": {c: sorted(set(p)) for c, p in sorted(self.projects.items()) if p},
        }

    @classmethod
    def from_json(cls, raw: Any) -> Reach:
        """Read a recorded reach back (tolerant of missing keys)."""
        if not isinstance(raw, Mapping):
            return cls()
        projects = raw.get("projects") or {}
        return cls(
            hub_wide=bool(raw.get("hub_wide")),
            clusters=tuple(str(c) for c in raw.get("clusters") or ()),
            projects={str(c): tuple(str(p) for p in ps or ()) for c, ps in projects.items()},
        )

    def touches(self, cluster: str | None = None, project: str | None = None) -> bool:
        """Whether this reach covers a hub (no cluster), a cluster, or a project of a cluster."""
        if self.hub_wide:
            return True
        if cluster is None:
            return bool(self.clusters or any(self.projects.values()))
        if cluster in self.clusters:
            return True
        held = self.projects.get(cluster, ())
        return bool(held) if project is None else project in held

    @property
    def empty(self) -> bool:
        """Whether the request could touch nothing."""
        return not (self.hub_wide or self.clusters or any(self.projects.values()))


@dataclass
class AuditEvent:
    """One decision. Built along the request; `to_json` gives the line written to the stream."""

    request_id: str | None = None
    hub: str | None = None
    subject: str | None = None
    username: str | None = None
    client: str | None = None
    auth: str | None = None
    source: str | None = None
    user_agent: str | None = None
    grafana_user: str | None = None
    method: str | None = None
    route: str | None = None
    query: list[str] = field(default_factory=list)
    forwarded: list[str] = field(default_factory=list)
    reach: Reach | None = None
    asked: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)
    decision: str | None = None
    reason: str | None = None
    status: int | None = None
    upstream_status: int | None = None
    bytes: int | None = None
    cache: str | None = None
    result_cache: str | None = None
    latency_ms: float | None = None
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """The complete event: every key present (null where it does not apply), no secrets."""
        return {
            "audit": True,
            "v": SCHEMA,
            "time": iso_time(self.time),
            "request_id": self.request_id,
            "hub": self.hub,
            "subject": self.subject,
            "username": self.username,
            "client": self.client,
            "auth": self.auth,
            # The caller controls all three: recorded as claimed, never as identity.
            "unverified": {
                "source": bounded(self.source, UNVERIFIED_MAX),
                "user_agent": bounded(self.user_agent, UNVERIFIED_MAX),
                "grafana_user": bounded(self.grafana_user, UNVERIFIED_MAX),
            },
            "method": self.method,
            "route": self.route,
            "query": bounded_list(self.query),
            "forwarded": bounded_list(self.forwarded),
            "reach": self.reach.to_json() if self.reach is not None else None,
            "resources": {"asked": sorted(set(self.asked)), "granted": sorted(set(self.granted))},
            "decision": self.decision,
            "reason": bounded(self.reason, 512),
            "status": self.status,
            "upstream_status": self.upstream_status,
            "bytes": self.bytes,
            "cache": self.cache,
            "result_cache": self.result_cache,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
        }


def unauthenticated_event(source: str, minute: int, count: int, route: str | None) -> dict[str, Any]:
    """The aggregate of one source's 401s in one minute (a flood is one line, not thousands)."""
    return {
        "audit": True,
        "v": SCHEMA,
        "time": iso_time(float(minute * 60)),
        "decision": "unauthenticated",
        "status": 401,
        "unverified": {"source": bounded(source, UNVERIFIED_MAX)},
        "route": route,
        "count": count,
        "window_s": 60,
    }


_last_second: tuple[int, str] = (-1, "")


def iso_time(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds, the form `audit --since/--until` compare against."""
    global _last_second
    secs = int(epoch)
    millis = round((epoch - secs) * 1000)
    if millis == 1000:
        secs, millis = secs + 1, 0
    cached = _last_second
    if cached[0] != secs:
        # Events arrive in bursts within the same second: format the second once.
        cached = _last_second = (secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)))
    return f"{cached[1]}.{millis:03d}Z"
