"""`GET /proxy/v1/whoami` and `GET|POST /proxy/v1/explain` (docs/http.md): the caller's own grants,
and what the proxy would do with a query — never forwarded, never from whether a resource exists
(only the caller's cached holdings call is asked, whatever the query names)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from aiohttp import web

from proxy import bounds, context, errors, promql
from proxy.naming import Keys, ResourceNames
from proxy.params import read_params
from proxy.selfservice import explain_document, explain_target, merge_explained, whoami_document
from proxy.services import SERVICES, Services, services
from proxy.steps import ALL_SERIES, admitted, authenticate

if TYPE_CHECKING:
    from proxy.routes import Route


def _names(svc: Services, hub: str) -> ResourceNames:
    s = svc.settings
    return ResourceNames(hub, Keys(s.hub_key, s.cluster_key, s.project_key))


async def whoami(request: web.Request, route: Route) -> web.StreamResponse:
    """Who the caller is and what they hold, from the (cached) holdings call; no upstream call."""
    svc, ctx = services(request), context.require()
    identity = await authenticate(request, svc, ctx)
    every = request.app[SERVICES]
    with ctx.phase("authz"):
        if every.authorizers:
            hubs = await every.holdings_by_hub(identity)
        else:
            hubs = {ctx.hub: await svc.authz.holdings(identity, None, {})}
    scheme = (request.headers.get("Authorization") or "").split(" ", 1)[0].lower()
    ctx.decision = "whoami"
    doc = whoami_document(identity, "basic" if scheme == "basic" else "bearer", hubs)
    return web.json_response(doc)


async def explain(request: web.Request, route: Route) -> web.StreamResponse:
    """The decision for this caller without forwarding; 200 whenever the explanation succeeded."""
    svc, ctx = services(request), context.require()
    identity = await authenticate(request, svc, ctx)
    params = await read_params(request, svc.settings.max_body_bytes)
    text = params.single("query", required=False)
    matches = params.all("match[]")
    if text is not None and matches:
        raise errors.BadRequest("give either query or match[], not both")
    bounds.check_matches(matches, svc.settings.max_match_selectors, svc.settings.max_query_bytes)
    target = explain_target(params.single("path", required=False), text is not None)
    if target is None:
        raise errors.BadRequest("path names no query or match[] endpoint of this kind")
    _, endpoint = target
    # the same admission and work bounds as a query; only the caller's own holdings are read
    async with admitted(svc, ctx, identity):
        with ctx.phase("authz"):
            holdings = await svc.authz.holdings(identity, None, {})
        if text is not None:
            mode: promql.Mode = svc.settings.enforce_mode
            doc = explain_document(
                lambda: promql.analyse_query(text, svc.limits, svc.model),
                holdings, mode, endpoint, _names(svc, ctx.hub),
            )  # fmt: skip
        else:
            mode = svc.settings.enforce_mode if matches else "narrow"
            # many selectors are explained a chunk at a time, the loop yielded between chunks
            docs = []
            for i, part in enumerate(bounds.chunks(matches or [ALL_SERIES])):
                if i:
                    await asyncio.sleep(0)
                docs.append(explain_document(
                    partial(promql.analyse_selectors, list(part), svc.limits, svc.model),
                    holdings, mode, endpoint, _names(svc, ctx.hub),
                ))  # fmt: skip
            doc = merge_explained(docs, svc.limits.max_rewrite_bytes)
    ctx.decision = "explained"
    return web.json_response(doc)
