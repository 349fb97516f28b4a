"""The steps a handler's pipeline is made of: authenticate, admit, check, decide, scope, fetch.

Each step records what it did on the request context (`proxy.context`); errors are typed and
mapped to HTTP by the middleware.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from proxy import bounds, caps, errors, lookback, promql
from proxy.audit import hook as audit
from proxy.authn import Identity
from proxy.coalesce import Whole
from proxy.context import RequestContext
from proxy.fanout import pinned_time
from proxy.params import RequestParams
from proxy.promql.analyse import reach_of_selectors
from proxy.promql.scope import Holdings
from proxy.promql.selectors import SelectorReach
from proxy.results.cache import Lookup, ResultsCache, note_outcome
from proxy.results.key import request_key
from proxy.services import Services
from proxy.upstream import UpstreamRequest

if TYPE_CHECKING:
    from proxy.routes import Route

T = TypeVar("T")
# Matches every series; the anchor for injecting a caller's scope where no match[] was given.
ALL_SERIES = '{__name__=~".+"}'


async def authenticate(request: web.Request, svc: Services, ctx: RequestContext) -> Identity:
    """Authenticate the caller; the subject goes on the request's context."""
    audit.begin(request, svc.audit)
    with ctx.phase("authn"):
        identity = await svc.authn.authenticate(request.headers.get("Authorization"))
    ctx.subject = identity.subject
    audit.note_identity(identity)
    return identity


@asynccontextmanager
async def admitted(svc: Services, ctx: RequestContext, identity: Identity) -> AsyncIterator[None]:
    """The admission step: hold the request's one upstream admission (docs: fair use) for the
    block; nested use within the same request (several upstream calls) takes no second one."""
    if ctx.admitted:
        yield
        return
    async with svc.scheduler.admission(ctx.hub, identity.subject) as waited:
        ctx.add_time("queue", waited)
        ctx.admitted = True
        try:
            yield
        finally:
            ctx.admitted = False


async def refuse_if_holding_nothing(svc: Services, ctx: RequestContext, identity: Identity) -> None:
    """403 before an expensive analysis when the caller holds nothing at all (cached holdings)."""
    with ctx.phase("authz"):
        holdings = await svc.authz.holdings(identity, None, {})
    if not holdings.holds_anything():
        raise errors.Forbidden("you hold no permission on this hub")


def check_lookback(svc: Services, params: RequestParams, analysis: promql.Analysis) -> None:
    """The request's whole time reach within PROXY_MAX_LOOKBACK, when set (docs: fair use)."""
    limit = svc.settings.max_lookback
    if limit <= 0:
        return
    now = time.time()
    end = caps.parse_time(params.single("end", required=False) or params.single("time", required=False) or "")
    start = caps.parse_time(params.single("start", required=False) or "")
    end = now if end is None else end
    lookback.check_lookback(analysis.trees, end if start is None else start, end, limit)


def check_range(svc: Services, params: RequestParams) -> None:
    """Points per series of a `query_range` within the configured cap."""
    caps.check_range(
        params.single("start", required=False),
        params.single("end", required=False),
        params.single("step", required=False),
        svc.settings.max_points,
    )


async def decide(
    svc: Services,
    ctx: RequestContext,
    identity: Identity,
    analysis: promql.Analysis,
    narrow: bool,
    apply: Callable[[Holdings, promql.Mode], T],
) -> tuple[T, Holdings]:
    """Ask Keycloak what the analysed request needs and enforce it; returns (result, holdings).

    Exact names first when the request is bounded. A request those names do not fully grant is
    decided again from everything the caller holds: in narrow mode to restrict it to the holdings
    (an unbounded *or partly granted* selector, docs/authorization.md), in deny mode so that the
    403 says what is missing rather than "you hold nothing" (exact names only cover those names).
    """
    reach = ctx.reach = analysis.reach()
    if analysis.has_selectors and reach.bounded:
        with ctx.phase("authz"):
            targeted = await svc.authz.holdings(identity, reach.clusters, reach.projects)
        try:
            result = apply(targeted, "deny")
        except promql.AccessDenied:
            pass  # not fully granted by the exact names: decide from the full holdings
        else:
            ctx.decision = "allowed"
            audit.note_decided(analysis.selectors, targeted, result)
            return result, targeted
    with ctx.phase("authz"):
        everything = await svc.authz.holdings(identity, None, {})
    result = apply(everything, "narrow" if narrow else "deny")
    restricted = narrow and analysis.has_selectors and not everything.hub_wide
    ctx.decision = "narrowed" if restricted else "allowed"
    audit.note_decided(analysis.selectors, everything, result)
    return result, everything


async def scoped_matches(
    svc: Services, ctx: RequestContext, identity: Identity, matches: list[str]
) -> list[str] | None:
    """The verified `match[]` list for the caller; None when nothing needs to be added."""
    return (await scoped_plan(svc, ctx, identity, matches))[0]


async def scoped_plan(
    svc: Services, ctx: RequestContext, identity: Identity, matches: list[str]
) -> tuple[list[str] | None, tuple[str, ...]]:
    """The verified `match[]` list (None when nothing needs to be added) and its warnings."""
    injected = not matches
    # Scope injection narrows by construction; explicit selectors follow the configured mode.
    narrow = injected or svc.settings.enforce_mode == "narrow"
    if len(matches) > bounds.SELECTOR_CHUNK:
        return await scoped_in_chunks(svc, ctx, identity, matches, narrow)
    analysis = promql.analyse_selectors(matches or [ALL_SERIES], svc.limits, svc.model)
    planned, holdings = await decide(
        svc, ctx, identity, analysis, narrow,
        lambda held, mode: promql.plan_selectors(analysis, held, mode),
    )  # fmt: skip
    if injected and holdings.hub_wide:
        return None, ()
    return list(planned.texts), planned.warnings


async def scoped_in_chunks(
    svc: Services, ctx: RequestContext, identity: Identity, matches: list[str], narrow: bool
) -> tuple[list[str], tuple[str, ...]]:
    """Many `match[]` decided and enforced a chunk at a time, the event loop yielded between
    chunks (docs: event-loop budget); the reach, decision and warnings are the whole request's."""
    selected: list[SelectorReach] = []
    warnings: dict[str, None] = {}
    narrowed = False

    async def step(part: Sequence[str]) -> list[str]:
        nonlocal narrowed
        analysis = promql.analyse_selectors(list(part), svc.limits, svc.model)
        selected.extend(analysis.selectors)
        planned, _ = await decide(
            svc, ctx, identity, analysis, narrow,
            lambda held, mode: promql.plan_selectors(analysis, held, mode),
        )  # fmt: skip
        warnings.update(dict.fromkeys(planned.warnings))
        narrowed = narrowed or ctx.decision == "narrowed"
        return list(planned.texts)

    out = await bounds.in_chunks(matches, step, svc.limits.max_rewrite_bytes)
    ctx.reach = reach_of_selectors(selected)
    ctx.decision = "narrowed" if narrowed else "allowed"
    return out, tuple(warnings)


def query_requests(
    request: web.Request, route: Route, params: RequestParams, cap: float, fan_out: bool
) -> Callable[[str], UpstreamRequest]:
    """How a rewritten query text is sent: where the caller put it, `timeout` capped at `cap`,
    and, for a fan-out, every branch evaluated at one pinned instant."""
    pinned = pinned_time(params.url, params.body) if fan_out else []
    path = route_path(request, route)

    def build(rewritten: str) -> UpstreamRequest:
        url, body = params.replaced("query", [rewritten])
        form = tuple(caps.cap_timeout(body, cap)) if params.had_body else None
        return UpstreamRequest(request.method, path, (*caps.cap_timeout(url, cap), *pinned), form)

    return build


def results_lookup(
    svc: Services, route: Route, analysis: promql.Analysis
) -> tuple[ResultsCache, Lookup] | None:
    """The results cache and what it needs of the query, for the routes it serves (docs/caching.md)."""
    if route.endpoint not in ("query", "query_range"):
        return None
    if svc.results is None:
        note_outcome("off")
        return None
    return svc.results, Lookup(analysis.trees, route.endpoint)


def with_matches(
    method: str, path: str, params: RequestParams, matches: list[str] | None, get_only: bool
) -> UpstreamRequest:
    """The upstream request with `match[]` replaced by `matches` (None: as sent); routes the
    upstream serves only with GET get every parameter in the URL."""
    if matches is None:
        url, body = list(params.url), list(params.body)
    else:
        url, body = params.replaced("match[]", matches)
    if get_only:
        url, body, method = url + body, [], "GET"
    form = tuple(body) if params.had_body and method == "POST" else None
    return UpstreamRequest(method, path, tuple(url), form)


async def holdings_or_refuse(svc: Services, ctx: RequestContext, identity: Identity) -> Holdings:
    """Everything the caller holds on this hub; 403 when that is nothing."""
    with ctx.phase("authz"):
        holdings = await svc.authz.holdings(identity, None, {})
    if not holdings.holds_anything():
        raise errors.Forbidden("you hold no permission on this hub")
    ctx.decision = "filtered"
    audit.note_decided(None, holdings, ())
    return holdings


async def visible_metric_names(
    request: web.Request, svc: Services, ctx: RequestContext, identity: Identity
) -> frozenset[str] | None:
    """Metric names in the caller's scope (None for hub-wide holders), cached per token."""
    found, names = svc.metric_names.get(identity.token_hash)
    if found:
        return names
    enforced = await scoped_matches(svc, ctx, identity, [])
    if enforced is not None:
        built = UpstreamRequest(
            "GET", "/api/v1/label/__name__/values", tuple(("match[]", m) for m in enforced)
        )
        status, doc = await fetch_json(request, svc, ctx, identity, built)
        if status != 200 or not isinstance(doc, dict):
            raise errors.UpstreamUnavailable("upstream could not list metric names")
        names = frozenset(str(n) for n in doc.get("data") or [])
    svc.metric_names.put(identity.token_hash, names, identity.exp)
    return names


async def fetch_json(
    request: web.Request, svc: Services, ctx: RequestContext, identity: Identity, built: UpstreamRequest
) -> tuple[int, Any]:
    """(status, decoded JSON) of the upstream's answer to `built`, under the request's admission;
    shared with identical requests in flight, whose followers take no admission (docs/caching.md)."""
    upstream = svc.upstream
    headers = upstream.json_headers(request)

    async def fetch() -> Whole:
        audit.note_forwarding()
        return await upstream.fetch_whole(built, headers)

    key = request_key(upstream, built, headers) if upstream.coalescer.enabled else b""
    whole = await upstream.coalescer.whole(key, fetch, lambda: admitted(svc, ctx, identity))
    audit.note_forwarding()  # a follower's too: it is answered with what was forwarded for it
    audit.note_upstream(whole.status)
    return upstream.decoded(whole)


async def filtered(
    request: web.Request,
    svc: Services,
    ctx: RequestContext,
    identity: Identity,
    built: UpstreamRequest,
    transform: Callable[[Any], Any],
) -> web.StreamResponse:
    """Fetch a JSON answer, apply `transform` to its `data` on success, pass errors through."""
    status, doc = await fetch_json(request, svc, ctx, identity, built)
    # decode, filter and encode are separate blocks of the event loop (docs/operations.md)
    await asyncio.sleep(0)
    if status == 200 and isinstance(doc, dict) and doc.get("status") == "success":
        doc = {**doc, "data": transform(doc.get("data"))}
        await asyncio.sleep(0)
    out = web.json_response(doc, status=status)
    audit.note_bytes(out.content_length)
    return out


def route_path(request: web.Request, route: Route) -> str:
    """The upstream path: the route table's (never the `/<hub>` it was served under), with
    `<name>` re-encoded."""
    name = request.match_info.get("name")
    return route.path.replace("{name}", name) if name is not None else route.path
