"""The request pipeline: each handler reads authenticate → params → analyse → decide → forward
(or filter), the forward step holding the request's one upstream admission. Route properties
come from the route table, parameter caps from `proxy.caps`, upstream I/O from `proxy.upstream`
and `proxy.bodies`; errors are mapped to HTTP by the middleware."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from proxy import bounds, caps, context, errors, lookback, promql
from proxy.answering import forward_planned, forward_with_warnings
from proxy.audit import hook as audit
from proxy.authn import Identity
from proxy.bodies import stream
from proxy.context import RequestContext
from proxy.fanout import pinned_time
from proxy.filters import Visible, filter_alerts, filter_metadata, filter_rules
from proxy.params import RequestParams, read_params
from proxy.promql.analyse import reach_of_selectors
from proxy.promql.scope import Holdings, labels_visible
from proxy.promql.selectors import SelectorReach
from proxy.services import Services, services
from proxy.upstream import UpstreamRequest

if TYPE_CHECKING:
    from proxy.routes import Route

T = TypeVar("T")
# Which query API a route is, for the PromQL engine: only `query` may fan out.
ENDPOINTS: dict[str, promql.Endpoint] = {"query": "query", "query_range": "query_range"}
# Matches every series; the anchor for injecting a caller's scope where no match[] was given.
ALL_SERIES = '{__name__=~".+"}'


# ----------------------------------------------------------------------------- the handlers


async def query(request: web.Request, route: Route) -> web.StreamResponse:
    """`/api/v1/query`, `query_range`, `query_exemplars`: analyse, authorize, rewrite, forward."""
    svc, ctx = services(request), context.require()
    identity = await authenticate(request, svc, ctx)
    params = await read_params(request, svc.settings.max_body_bytes)
    text = params.single("query")
    assert text is not None
    audit.note_queries([text])
    if route.range_capped:
        check_range(svc, params)
    if bounds.is_heavy(text=text) and len(text.encode()) <= svc.limits.max_bytes:  # else: guard's 400
        await refuse_if_holding_nothing(svc, ctx, identity)
    analysis = promql.analyse_query(text, svc.limits, svc.model)
    check_lookback(svc, params, analysis)
    endpoint = ENDPOINTS.get(route.name, "other")
    planned, _ = await decide(
        svc, ctx, identity, analysis, svc.settings.enforce_mode == "narrow",
        lambda held, mode: promql.plan_query(analysis, held, mode, endpoint),
    )  # fmt: skip
    cap = svc.settings.prometheus_timeout
    # the branches of a fan-out are all evaluated at one instant
    pinned = pinned_time(params.url, params.body) if planned.fan_out else []

    def build(rewritten: str) -> UpstreamRequest:
        url, body = params.replaced("query", [rewritten])
        form = tuple(caps.cap_timeout(body, cap)) if params.had_body else None
        return UpstreamRequest(
            request.method, route_path(request, route), (*caps.cap_timeout(url, cap), *pinned), form
        )

    return await forward_planned(request, svc.upstream, planned, build, lambda: admitted(svc, ctx, identity))


async def selectors(request: web.Request, route: Route) -> web.StreamResponse:
    """`series`, `labels`, `label/<name>/values`, `federate`: every `match[]` enforced."""
    svc, ctx = services(request), context.require()
    identity = await authenticate(request, svc, ctx)
    params = await read_params(request, svc.settings.max_body_bytes)
    name = request.match_info.get("name")
    if name is not None:
        bounds.check_label_name(name)
    matches = params.all("match[]")
    bounds.check_matches(matches, svc.settings.max_match_selectors, svc.settings.max_query_bytes)
    if bounds.is_heavy(matches):
        await refuse_if_holding_nothing(svc, ctx, identity)
    audit.note_queries(matches)
    enforced, warnings = await scoped_plan(svc, ctx, identity, matches)
    if enforced is None and route.match_required:
        enforced = [ALL_SERIES]  # a hub-wide caller's scope is everything: same answer shape for all
    built = with_matches(
        request.method, route_path(request, route), params, enforced, route.upstream_get_only
    )
    if route.name == "federate":
        warnings = ()  # the text format has no place for them
    return await forward_with_warnings(
        request, svc.upstream, built, warnings, lambda: admitted(svc, ctx, identity)
    )


async def rules(request: web.Request, route: Route) -> web.StreamResponse:
    """`/api/v1/rules`: the rules (and their alerts) the caller's grant lets them see."""
    return await filtered_by_grant(
        request, route, lambda data, visible, held: filter_rules(data, visible, held.hub_wide)
    )


async def alerts(request: web.Request, route: Route) -> web.StreamResponse:
    """`/api/v1/alerts`: only the alerts whose labels the caller may see."""
    return await filtered_by_grant(request, route, lambda data, visible, _held: filter_alerts(data, visible))


async def filtered_by_grant(
    request: web.Request, route: Route, filter_data: Callable[[dict[str, Any], Visible, Holdings], Any]
) -> web.StreamResponse:
    """Rules and alerts: authenticate → params → holdings → fetch → filter by label visibility."""
    svc, ctx = services(request), context.require()
    identity = await authenticate(request, svc, ctx)
    params = await read_params(request, svc.settings.max_body_bytes)
    holdings = await holdings_or_refuse(svc, ctx, identity)

    def visible(labels: Mapping[str, str]) -> bool:
        return labels_visible(labels, holdings, svc.model)

    def transform(data: Any) -> Any:
        return filter_data(data, visible, holdings) if isinstance(data, dict) else data

    built = UpstreamRequest("GET", route_path(request, route), params.url)
    return await filtered(request, svc, ctx, identity, built, transform)


async def metadata(request: web.Request, route: Route) -> web.StreamResponse:
    """`/api/v1/metadata` limited to the metric names visible to the caller."""
    svc, ctx = services(request), context.require()
    identity = await authenticate(request, svc, ctx)
    params = await read_params(request, svc.settings.max_body_bytes)
    async with admitted(svc, ctx, identity):
        names = await visible_metric_names(request, svc, ctx, identity)
        built = UpstreamRequest("GET", route_path(request, route), params.url)
        return await filtered(
            request, svc, ctx, identity, built, lambda data: filter_metadata(data or {}, names)
        )


async def passthrough(request: web.Request, route: Route) -> web.StreamResponse:
    """Authenticated endpoints without series data (buildinfo, format_query, parse_query)."""
    svc, ctx = services(request), context.require()
    identity = await authenticate(request, svc, ctx)
    params = await read_params(request, svc.settings.max_body_bytes)
    if not identity.subject:
        raise errors.Unauthorized("no subject")
    ctx.decision = "passthrough"
    form = params.body if params.had_body else None
    built = UpstreamRequest(request.method, route_path(request, route), params.url, form)
    return await forward(request, svc, ctx, identity, built)


async def root(request: web.Request, route: Route) -> web.StreamResponse:
    """`GET /`: a short text for an authenticated caller (401 otherwise), so prometheus-api-client's
    connection check fails for wrong credentials; `PROXY_ROOT_ANONYMOUS` answers anyone."""
    svc = services(request)
    if not svc.settings.root_anonymous:
        await authenticate(request, svc, context.require())
    return web.Response(text="prom-keycloak-proxy: authorizing PromQL proxy\n")


async def healthz(request: web.Request, route: Route) -> web.StreamResponse:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request, route: Route) -> web.StreamResponse:
    """Readiness: configuration loaded and the JWKS fetched once."""
    if not services(request).authn.ready:
        return web.json_response({"status": "not ready", "reason": "JWKS not fetched yet"}, status=503)
    return web.json_response({"status": "ready"})


# ----------------------------------------------------------------------------- the steps


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
        async with admitted(svc, ctx, identity):
            status, doc = await svc.upstream.fetch_json(request, built)
        if status != 200 or not isinstance(doc, dict):
            raise errors.UpstreamUnavailable("upstream could not list metric names")
        names = frozenset(str(n) for n in doc.get("data") or [])
    svc.metric_names.put(identity.token_hash, names, identity.exp)
    return names


async def forward(
    request: web.Request, svc: Services, ctx: RequestContext, identity: Identity, built: UpstreamRequest
) -> web.StreamResponse:
    """The forward step: send the built request under the request's admission, stream the answer."""
    async with admitted(svc, ctx, identity):
        audit.note_forwarding()
        response = await svc.upstream.send(built, svc.upstream.headers_for(request, built.form is not None))
        audit.note_upstream(response.status)
        out = await stream(request, response)
        audit.note_bytes(out.body_length)
        return out


async def filtered(
    request: web.Request,
    svc: Services,
    ctx: RequestContext,
    identity: Identity,
    built: UpstreamRequest,
    transform: Callable[[Any], Any],
) -> web.StreamResponse:
    """Fetch a JSON answer, apply `transform` to its `data` on success, pass errors through."""
    async with admitted(svc, ctx, identity):
        audit.note_forwarding()
        status, doc = await svc.upstream.fetch_json(request, built)
    audit.note_upstream(status)
    if status == 200 and isinstance(doc, dict) and doc.get("status") == "success":
        doc = {**doc, "data": transform(doc.get("data"))}
    out = web.json_response(doc, status=status)
    audit.note_bytes(out.content_length)
    return out


def route_path(request: web.Request, route: Route) -> str:
    """The upstream path: the route table's (never the `/<hub>` it was served under), with
    `<name>` re-encoded."""
    name = request.match_info.get("name")
    return route.path.replace("{name}", name) if name is not None else route.path
