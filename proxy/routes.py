"""The route table: every path the proxy serves and how each behaves, in one readable place.

Anything else is 404; a known path with another method is 405 with `Allow`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from proxy import handlers

Handler = Callable[[web.Request, "Route"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One served path: methods, handler, the bounded name used in logs and metrics, and the
    properties the handler's pipeline reads."""

    path: str
    methods: tuple[str, ...]
    handler: Handler
    name: str
    # Prometheus selects nothing without match[] here: the caller's scope is always injected.
    match_required: bool = False
    # Prometheus serves it with GET only: a caller's POST is sent upstream as GET.
    upstream_get_only: bool = False
    # A range query: its span and points per series are capped.
    range_capped: bool = False
    # Authorizes (counted in the decisions metric); health and the root text do not.
    decides: bool = True


GET, GET_POST = ("GET",), ("GET", "POST")
QUERY = functools.partial(Route, methods=GET_POST, handler=handlers.query)
SELECTORS = functools.partial(Route, methods=GET_POST, handler=handlers.selectors)
PASSTHROUGH = functools.partial(Route, methods=GET_POST, handler=handlers.passthrough)

API_ROUTES: tuple[Route, ...] = (
    QUERY("/api/v1/query", name="query"),
    QUERY("/api/v1/query_range", name="query_range", range_capped=True),
    QUERY("/api/v1/query_exemplars", name="query_exemplars"),
    SELECTORS("/api/v1/series", name="series", match_required=True),
    SELECTORS("/api/v1/labels", name="labels"),
    SELECTORS("/api/v1/label/{name}/values", name="label_values", upstream_get_only=True),
    SELECTORS("/federate", name="federate", match_required=True, upstream_get_only=True),
    Route("/api/v1/rules", GET, handlers.rules, "rules"),
    Route("/api/v1/alerts", GET, handlers.alerts, "alerts"),
    Route("/api/v1/metadata", GET, handlers.metadata, "metadata"),
    PASSTHROUGH("/api/v1/status/buildinfo", name="buildinfo"),
    PASSTHROUGH("/api/v1/format_query", name="format_query"),
    PASSTHROUGH("/api/v1/parse_query", name="parse_query"),
    Route("/", GET, handlers.root, "root", decides=False),
    Route("/healthz", GET, handlers.healthz, "healthz", decides=False),
    Route("/readyz", GET, handlers.readyz, "readyz", decides=False),
)

HEALTH_ROUTES: tuple[Route, ...] = tuple(r for r in API_ROUTES if r.name in ("healthz", "readyz"))


def add_routes(app: web.Application, routes: tuple[Route, ...]) -> None:
    """Register a table; each handler is called with its request and its route."""
    for route in routes:
        resource = app.router.add_resource(route.path, name=route.name)
        handler = _bound(route)
        for method in route.methods:
            resource.add_route(method, handler)


def _bound(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """aiohttp's handler for `route`: its pipeline, given the route it serves."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await route.handler(request, route)

    return handle
