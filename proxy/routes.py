"""The route table: every path the proxy serves and how each behaves, in one readable place.

Anything else is 404; a known path with another method is 405 with `Allow`. Every hub route is
served under `/<hub>` for each configured hub, and without a prefix for the default hub
(docs: several hubs); the table itself names each path once.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource

from proxy import errors, handlers, selfservice_http
from proxy.promql import Endpoint

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
    # Served per hub (`/<hub><path>`, and `<path>` for the default hub); health and `/` are not.
    per_hub: bool = True
    # Which query API it is for the PromQL engine (only `query` and `query_exemplars` fan out).
    endpoint: Endpoint = "other"
    # The answer is JSON, where the proxy's warnings can go (not federate's text format).
    json_answer: bool = True


GET, GET_POST = ("GET",), ("GET", "POST")
QUERY = functools.partial(Route, methods=GET_POST, handler=handlers.query)
SELECTORS = functools.partial(Route, methods=GET_POST, handler=handlers.selectors)
PASSTHROUGH = functools.partial(Route, methods=GET_POST, handler=handlers.passthrough)

API_ROUTES: tuple[Route, ...] = (
    QUERY("/api/v1/query", name="query", endpoint="query"),
    QUERY("/api/v1/query_range", name="query_range", range_capped=True, endpoint="query_range"),
    QUERY("/api/v1/query_exemplars", name="query_exemplars", endpoint="query_exemplars"),
    SELECTORS("/api/v1/series", name="series", match_required=True),
    SELECTORS("/api/v1/labels", name="labels"),
    SELECTORS("/api/v1/label/{name}/values", name="label_values", upstream_get_only=True),
    SELECTORS("/federate", name="federate", match_required=True, upstream_get_only=True, json_answer=False),
    Route("/api/v1/rules", GET, handlers.rules, "rules"),
    Route("/api/v1/alerts", GET, handlers.alerts, "alerts"),
    Route("/api/v1/metadata", GET, handlers.metadata, "metadata"),
    PASSTHROUGH("/api/v1/status/buildinfo", name="buildinfo"),
    PASSTHROUGH("/api/v1/format_query", name="format_query"),
    PASSTHROUGH("/api/v1/parse_query", name="parse_query"),
    Route("/proxy/v1/whoami", GET, selfservice_http.whoami, "whoami", decides=False, per_hub=False),
    Route("/proxy/v1/explain", GET_POST, selfservice_http.explain, "explain", decides=False),
    Route("/", GET, handlers.root, "root", decides=False, per_hub=False),
    Route("/healthz", GET, handlers.healthz, "healthz", decides=False, per_hub=False),
    Route("/readyz", GET, handlers.readyz, "readyz", decides=False, per_hub=False),
)

HEALTH_ROUTES: tuple[Route, ...] = tuple(r for r in API_ROUTES if r.name in ("healthz", "readyz"))


# What each registered resource serves: (route name for logs and metrics, hub). The request
# middleware reads it once per request; anything missing is "unmatched".
Routing = dict[AbstractResource, tuple[str, str]]


def add_routes(
    app: web.Application,
    routes: tuple[Route, ...],
    hubs: Sequence[str] = (),
    default_hub: str | None = None,
) -> Routing:
    """Register a table; each handler is called with its request and its route. Hub routes are
    registered once per hub under `/<hub>` and, for `default_hub`, without a prefix (without a
    default hub the unprefixed path answers 404 naming the hub paths)."""
    routing: Routing = {}
    for route in routes:
        if not route.per_hub:
            routing[_register(app, route.path, route, route.name)] = (route.name, default_hub or "")
            continue
        for hub in hubs:
            routing[_register(app, f"/{hub}{route.path}", route)] = (route.name, hub)
        if default_hub is not None:
            routing[_register(app, route.path, route, route.name)] = (route.name, default_hub)
        elif hubs:
            routing[_register(app, route.path, _no_default(route, hubs))] = (route.name, "")
    return routing


def _register(app: web.Application, path: str, route: Route, name: str | None = None) -> AbstractResource:
    """One aiohttp resource for `path` answering `route`'s methods."""
    resource = app.router.add_resource(path, name=name)
    handler = _bound(route)
    for method in route.methods:
        resource.add_route(method, handler)
    return resource


def _bound(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """aiohttp's handler for `route`: its pipeline, given the route it serves."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await route.handler(request, route)

    return handle


def _no_default(route: Route, hubs: Sequence[str]) -> Route:
    """`route` without a default hub: 404 with the paths that do serve it."""
    paths = ", ".join(f"/{hub}{route.path}" for hub in hubs)

    async def not_found(request: web.Request, _route: Route) -> web.StreamResponse:
        raise errors.NotFound(f"no default hub is configured: use one of {paths}")

    return Route(route.path, route.methods, not_found, route.name, decides=False)
