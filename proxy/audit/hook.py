"""From the request context to one audit event per request (the end-of-request hook)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from proxy import context
from proxy.audit.event import AuditEvent, Reach
from proxy.audit.reach import forwarded_reach
from proxy.audit.writer import AuditWriter
from proxy.errors import ProxyError
from proxy.naming import Keys, ResourceNames

if TYPE_CHECKING:
    from aiohttp import web

    from proxy.authn import Identity
    from proxy.config import Settings
    from proxy.context import RequestContext
    from proxy.promql.scope import Holdings
    from proxy.promql.selectors import SelectorReach

GRAFANA_USER = "X-Grafana-User"
# Requests ended before anything was forwarded, by what their status means for the audit.
_REFUSALS = {401: "unauthenticated", 403: "denied", 429: "refused"}


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
    queries: list[str] = field(default_factory=list)
    forwarded: list[str] = field(default_factory=list)
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
        ctx.audit.queries = list(texts)


def note_decided(selectors: tuple[SelectorReach, ...] | None, holdings: Holdings, result: Any) -> None:
    """The holdings the forwarded text(s) were confined to, and those texts; `selectors` None:
    the answer is filtered to the holdings as a whole (rules, alerts)."""
    ctx = context.current()
    if ctx is None or ctx.audit is None:
        return
    notes = ctx.audit
    notes.selectors, notes.holdings = selectors, holdings
    if isinstance(result, str):
        notes.forwarded = [result]
    elif isinstance(result, list | tuple):
        notes.forwarded = [str(r) for r in result]
    else:
        texts = getattr(result, "texts", None)
        notes.forwarded = [str(t) for t in texts] if texts is not None else []


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
    """Writes one event per request of the audited routes; 401s without identity are aggregated."""

    def __init__(self, writer: AuditWriter, routes: Iterable[str], settings: Settings) -> None:
        self.writer = writer
        self.routes = frozenset(routes)
        self.keys = Keys(settings.hub_key, settings.cluster_key, settings.project_key)
        self._names: dict[str, ResourceNames] = {}

    def names(self, hub: str) -> ResourceNames:
        """The resource names of a hub (built once)."""
        found = self._names.get(hub)
        if found is None:
            found = self._names[hub] = ResourceNames(hub, self.keys)
        return found

    def __call__(self, ctx: RequestContext) -> None:
        """Build and queue the request's event."""
        if ctx.route not in self.routes:
            return
        notes = ctx.audit if ctx.audit is not None else AuditNotes()
        if ctx.status == 401 and notes.identity is None:
            self.writer.unauthenticated(notes.source or "unknown", ctx.route)
            return
        self.writer.emit(self.event(ctx, notes))

    def event(self, ctx: RequestContext, notes: AuditNotes) -> AuditEvent:
        """The complete event of one request."""
        subject = username = client = None
        if notes.identity is not None:
            subject, username, client = subject_of(notes.identity)
        decision = audit_decision(ctx.decision, ctx.status, notes.forwarding)
        names = self.names(ctx.hub)
        reach: Reach | None = None
        granted: list[str] = []
        if notes.holdings is not None:
            granted = _granted(names, notes.holdings)
            if notes.forwarding:
                reach = _reach(notes.selectors, notes.holdings)
        asked: list[str] = []
        if ctx.reach is not None:
            bounded = ctx.reach.bounded
            asked = names.needed(ctx.reach.clusters, ctx.reach.projects) if bounded else [f"#{'GET'}"]
        caches = ctx.caches
        return AuditEvent(
            request_id=ctx.request_id,
            hub=ctx.hub,
            subject=subject,
            username=username,
            client=client,
            auth=notes.auth if notes.identity is not None else None,
            source=notes.source,
            user_agent=notes.user_agent,
            grafana_user=notes.grafana_user,
            method=ctx.method,
            route=ctx.route,
            query=notes.queries,
            forwarded=notes.forwarded if notes.forwarding else [],
            reach=reach,
            asked=asked,
            granted=granted,
            decision=decision,
            reason=ctx.error,
            status=ctx.status,
            upstream_status=notes.upstream_status,
            bytes=notes.bytes,
            cache=("miss" if "miss" in caches.values() else "hit") if caches else None,
            latency_ms=ctx.elapsed() * 1000.0,
            time=time.time(),
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
