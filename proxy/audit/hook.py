"""From the request context to one audit event per request (the end-of-request hook)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from proxy import context
from proxy.audit.event import (
    MAX_TEXT,
    SCHEMA,
    UNVERIFIED_MAX,
    BoundedMemo,
    Reach,
    bounded_list,
    iso_time,
)
from proxy.audit.reach import forwarded_reach
from proxy.audit.writer import AuditWriter
from proxy.errors import ProxyError
from proxy.naming import Keys, ResourceNames

if TYPE_CHECKING:
    from aiohttp import web

    from proxy.authn import Identity
    from proxy.config import Settings
    from proxy.context import RequestContext
    from proxy.promql import Reach as QueryReach
    from proxy.promql.scope import Holdings
    from proxy.promql.selectors import SelectorReach

GRAFANA_USER = "X-Grafana-User"
# Requests ended before anything was forwarded, by what their status means for the audit.
_REFUSALS = {401: "unauthenticated", 403: "denied", 429: "refused"}
# A finished request's context as the writer thread sees it: request id, hub, method, route,
# status, decision, error, the query's reach, subject, cache outcomes (immutable values only).
Facts = tuple[
    str,
    str,
    str,
    str,
    int,
    "str | None",
    "str | None",
    "QueryReach | None",
    "str | None",
    "str | None",
    "str | None",
]


class AuditUnavailable(ProxyError):
    """PROXY_AUDIT_REQUIRED is set and audit events cannot be written now."""

    status: ClassVar[int] = 503
    error_type: ClassVar[str] = "unavailable"


@dataclass(slots=True)
class AuditNotes:
    """What the handlers learn along the request that the audit event needs (cheap to fill)."""

    source: str | None = None
    user_agent: str | None = None
    grafana_user: str | None = None
    auth: str | None = None
    identity: Identity | None = None
    # Replaced whole, never changed in place (the writer thread reads them): tuples.
    queries: Sequence[str] = ()
    forwarded: Sequence[str] = ()
    holdings: Holdings | None = None
    selectors: tuple[SelectorReach, ...] | None = ()
    forwarding: bool = False
    upstream_status: int | None = None
    bytes: int | None = None

    def capture(self, request: web.Request) -> None:
        """The unverified request facts: peer (or first X-Forwarded-For), User-Agent, Grafana user."""
        headers = request.headers
        forwarded_for = headers.get("X-Forwarded-For")
        self.source = forwarded_for.split(",")[0].strip() if forwarded_for else request.remote
        self.user_agent = headers.get("User-Agent")
        self.grafana_user = headers.get(GRAFANA_USER)
        # Only the scheme: the credential itself never reaches the notes.
        scheme = headers.get("Authorization", "").split(" ", 1)[0].lower()
        self.auth = scheme if scheme in ("bearer", "basic") else None


# --- the handlers' side: each a no-op when the request has no notes (audit off) ---------------


def begin(request: web.Request, writer: AuditWriter | None) -> None:
    """Start the current request's notes; refuse it when audit is required and not writable."""
    ctx = context.current()
    if writer is None or ctx is None:
        return
    notes = ctx.audit = AuditNotes()
    notes.capture(request)
    if writer.required and not writer.healthy():
        raise AuditUnavailable("the audit stream cannot be written; requests are refused until it can")


def note_identity(identity: Identity) -> None:
    """Who the caller is."""
    ctx = context.current()
    if ctx is not None and ctx.audit is not None:
        ctx.audit.identity = identity


def note_queries(texts: Iterable[str]) -> None:
    """The request's own query or match[] texts."""
    ctx = context.current()
    if ctx is not None and ctx.audit is not None:
        ctx.audit.queries = tuple(texts)


def note_decided(selectors: tuple[SelectorReach, ...] | None, holdings: Holdings, result: Any) -> None:
    """The holdings the forwarded text(s) were confined to, and those texts; `selectors` None:
    the answer is filtered to the holdings as a whole (rules, alerts)."""
    ctx = context.current()
    if ctx is None or ctx.audit is None:
        return
    notes = ctx.audit
    notes.selectors, notes.holdings = selectors, holdings
    if isinstance(result, str):
        notes.forwarded = (result,)
    elif isinstance(result, list | tuple):
        notes.forwarded = tuple(str(r) for r in result)
    else:
        texts = getattr(result, "texts", None)
        notes.forwarded = tuple(str(t) for t in texts) if texts is not None else ()


def note_forwarding() -> None:
    """The request is being sent upstream (its decision stands whatever the upstream answers)."""
    ctx = context.current()
    if ctx is not None and ctx.audit is not None:
        ctx.audit.forwarding = True


def note_upstream(status: int) -> None:
    """The upstream's status (the last one, for several upstream calls)."""
    ctx = context.current()
    if ctx is not None and ctx.audit is not None:
        ctx.audit.upstream_status = status


def note_bytes(count: int | None) -> None:
    """Bytes of the answer sent to the caller."""
    ctx = context.current()
    if ctx is not None and ctx.audit is not None:
        ctx.audit.bytes = count


# --- the end of the request -------------------------------------------------------------------


def subject_of(identity: Identity) -> tuple[str, str | None, str | None]:
    """(subject, username, client): `sub` (a service account's client id), username, azp."""
    claims: Mapping[str, Any] = identity.claims
    sub = identity.client_id or str(claims.get("sub") or identity.subject)
    username = claims.get("preferred_username")
    azp = claims.get("azp")
    return sub, str(username) if username else None, str(azp) if azp else None


def audit_decision(decision: str | None, status: int, forwarded: bool) -> str:
    """What was decided: the handler's decision once the request went upstream (whatever the
    upstream answered); otherwise what the refusal's status says."""
    if forwarded and decision:
        return decision
    if status in _REFUSALS:
        return _REFUSALS[status]
    if status >= 500:
        return "error"
    if status >= 400:
        return "invalid"
    return decision or "allowed"


class AuditHook:
    """Writes one event per request of the audited routes; 401s without identity are aggregated.

    On the event loop the hook only queues the finished request's context; the writer thread
    renders the line. What depends only on the analysed query and the holdings (reach, resource
    names) is rendered once per (query, holdings) and reused: dashboards repeat both.
    """

    def __init__(self, writer: AuditWriter, routes: Iterable[str], settings: Settings) -> None:
        self.writer = writer
        self.routes = frozenset(routes)
        self.keys = Keys(settings.hub_key, settings.cluster_key, settings.project_key)
        # Built here, on the event loop, for the configured hubs only: a request with no hub (no
        # default hub, 404) or an unknown one has no resource names, and the writer thread only
        # reads this mapping.
        hubs = [h.name for h in settings.hubs] or [settings.acm_hub]
        self._names: Mapping[str, ResourceNames] = {h: ResourceNames(h, self.keys) for h in hubs if h}
        self._tails: dict[tuple[Any, ...], tuple[Any, str]] = {}
        self._bound = BoundedMemo()

    def names(self, hub: str) -> ResourceNames | None:
        """The resource names of a configured hub; None for a request not bound to one."""
        return self._names.get(hub)

    def __call__(self, ctx: RequestContext) -> None:
        """Queue the request's event (rendered by the writer thread)."""
        if ctx.route not in self.routes:
            return
        notes = ctx.audit
        if notes is None:
            notes = AuditNotes()
        else:
            # Detached: from here on only the writer thread reads the notes, and a task still
            # running under this request's context (a coalesced leader) notes nothing more.
            ctx.audit = None
        if ctx.status == 401 and notes.identity is None:
            self.writer.unauthenticated(notes.source or "unknown", ctx.route)
            return
        caches = ctx.caches
        # What the writer needs of the context, as it is now: the context stays the event loop's.
        facts = (
            ctx.request_id,
            ctx.hub,
            ctx.method,
            ctx.route,
            ctx.status,
            ctx.decision,
            ctx.error,
            ctx.reach,
            ctx.subject,
            ("miss" if "miss" in caches.values() else "hit") if caches else None,
            ctx.result_cache,
        )
        self.writer.emit(Pending(self, facts, notes, time.time(), ctx.elapsed() * 1000.0))

    def render(self, facts: Facts, notes: AuditNotes, when: float, latency_ms: float) -> str:
        """The event's JSON line (writer thread)."""
        request_id, hub, method, route, status, decision, error, reach, _, cache, result_cache = facts
        subject = username = client = None
        if notes.identity is not None:
            subject, username, client = subject_of(notes.identity)
        bound = self._bound
        head = {
            "audit": True,
            "v": SCHEMA,
            "time": iso_time(when),
            "request_id": request_id,
            "hub": hub,
            "subject": subject,
            "username": username,
            "client": client,
            "auth": notes.auth if notes.identity is not None else None,
            "unverified": {
                "source": bound(notes.source, UNVERIFIED_MAX),
                "user_agent": bound(notes.user_agent, UNVERIFIED_MAX),
                "grafana_user": bound(notes.grafana_user, UNVERIFIED_MAX),
            },
            "method": method,
            "route": route,
            "query": bounded_list(notes.queries, MAX_TEXT, bound),
            "forwarded": bounded_list(notes.forwarded, MAX_TEXT, bound) if notes.forwarding else [],
            "decision": audit_decision(decision, status, notes.forwarding),
            "reason": bound(error, 512),
            "status": status,
            "upstream_status": notes.upstream_status,
            "bytes": notes.bytes,
            "cache": cache,
            "result_cache": result_cache,
            "latency_ms": round(latency_ms, 3),
        }
        text = json.dumps(head, separators=(",", ":"), ensure_ascii=False)
        return text[:-1] + self._tail(hub, reach, notes) + "}"

    def _tail(self, hub: str, asked_reach: QueryReach | None, notes: AuditNotes) -> str:
        """`,"reach":…,"resources":…` for this request (cached per query analysis and holdings)."""
        selectors = notes.selectors
        key = (hub, id(selectors), notes.holdings, notes.forwarding, asked_reach is not None)
        hit = self._tails.get(key)
        if hit is not None and hit[0] is selectors:
            return hit[1]
        names = self.names(hub)
        reach: Reach | None = None
        granted: list[str] = []
        if notes.holdings is not None:
            granted = _granted(names, notes.holdings) if names is not None else []
            if notes.forwarding:
                reach = _reach(selectors, notes.holdings)
        asked: list[str] = []
        if asked_reach is not None and names is not None:
            asked = (
                names.needed(asked_reach.clusters, asked_reach.projects) if asked_reach.bounded else ["#GET"]
            )
        tail = (
            ',"reach":'
            + json.dumps(reach.to_json() if reach is not None else None, separators=(",", ":"))
            + ',"resources":'
            + json.dumps({"asked": sorted(set(asked)), "granted": granted}, separators=(",", ":"))
        )
        if len(self._tails) >= 4096:
            self._tails.clear()
        self._tails[key] = (selectors, tail)
        return tail


class Pending:
    """A finished request waiting for the writer thread to render its line: the context's facts
    as a tuple and the request's notes, detached from the context."""

    __slots__ = ("facts", "hook", "latency_ms", "notes", "when")

    def __init__(
        self, hook: AuditHook, facts: Facts, notes: AuditNotes, when: float, latency_ms: float
    ) -> None:
        self.hook, self.facts, self.notes, self.when, self.latency_ms = hook, facts, notes, when, latency_ms

    def render(self) -> str:
        """The JSON line."""
        return self.hook.render(self.facts, self.notes, self.when, self.latency_ms)

    def fallback(self, exc: BaseException) -> str:
        """What is known for sure when the full line cannot be rendered (marked incomplete)."""
        request_id, hub, method, route, status, decision, _, _, subject, _, _ = self.facts
        return json.dumps(
            {
                "audit": True,
                "v": SCHEMA,
                "time": iso_time(self.when),
                "request_id": request_id,
                "hub": hub,
                "subject": subject,
                "method": method,
                "route": route,
                "status": status,
                "decision": audit_decision(decision, status, self.notes.forwarding),
                "incomplete": type(exc).__name__,
            },
            separators=(",", ":"),
        )


def _reach(selectors: tuple[SelectorReach, ...] | None, held: Holdings) -> Reach:
    if selectors is not None:
        return forwarded_reach(selectors, held)
    if held.hub_wide:
        return Reach(hub_wide=True)
    projects = {c: tuple(ps) for c, ps in held.projects.items() if c not in held.clusters}
    return Reach(clusters=tuple(held.clusters), projects=projects)


def _granted(names: ResourceNames, held: Holdings) -> list[str]:
    """The holdings the decision used, as resource names."""
    if held.hub_wide:
        return [names.hub]
    out = [names.cluster(c) for c in sorted(held.clusters)]
    out += [names.project(c, p) for c, ps in sorted(held.projects.items()) for p in sorted(ps)]
    return out
