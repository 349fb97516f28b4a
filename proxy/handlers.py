"""The request pipeline: each handler reads authenticate → params → analyse → decide → forward
(or filter), the forward step holding the request's one upstream admission. The steps are in
`proxy.steps`, route properties in the route table (`proxy.routes`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxy import bounds, context, errors, promql
from proxy.answering import forward_planned, forward_with_warnings
from proxy.audit import hook as audit
from proxy.filters import Visible, filter_alerts, filter_metadata, filter_rules
from proxy.params import read_params
from proxy.promql.scope import Holdings, labels_visible
from proxy.services import services
from proxy.steps import (
    ALL_SERIES,
    admitted,
    authenticate,
    check_lookback,
    check_range,
    decide,
    filtered,
    holdings_or_refuse,
    query_requests,
    refuse_if_holding_nothing,
    results_lookup,
    route_path,
    scoped_plan,
    visible_metric_names,
    with_matches,
)
from proxy.upstream import UpstreamRequest

if TYPE_CHECKING:
    from proxy.routes import Route


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
    planned, _ = await decide(
        svc, ctx, identity, analysis, svc.settings.enforce_mode == "narrow",
        lambda held, mode: promql.plan_query(analysis, held, mode, route.endpoint),
    )  # fmt: skip
    build = query_requests(request, route, params, svc.settings.prometheus_timeout, planned.fan_out)
    results = results_lookup(svc, route, analysis)
    return await forward_planned(
        request, svc.upstream, planned, build, lambda: admitted(svc, ctx, identity), results
    )


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
    warnings = warnings if route.json_answer else ()  # the text format has no place for them
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
    return await forward_with_warnings(request, svc.upstream, built, (), lambda: admitted(svc, ctx, identity))


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
