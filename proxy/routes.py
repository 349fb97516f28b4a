"""The route table: every path the proxy serves, in one readable place. Anything else is 404."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from proxy import handlers


@dataclass(frozen=True)
class Route:
    """One served path: its methods, handler and the bounded name used in logs and metrics."""

    path: str
    methods: tuple[str, ...]
    handler: handlers.Handler
    name: str


GET, GET_POST = ("GET",), ("GET", "POST")

API_ROUTES: tuple[Route, ...] = (
    Route("/api/v1/query", GET_POST, handlers.query, "query"),
    Route("/api/v1/query_range", GET_POST, handlers.query, "query_range"),
    Route("/api/v1/query_exemplars", GET_POST, handlers.query, "query_exemplars"),
    Route("/api/v1/series", GET_POST, handlers.selectors, "series"),
    Route("/api/v1/labels", GET_POST, handlers.selectors, "labels"),
    Route("/api/v1/label/{name}/values", GET_POST, handlers.selectors, "label_values"),
    Route("/federate", GET_POST, handlers.selectors, "federate"),
    Route("/api/v1/rules", GET, handlers.rules, "rules"),
    Route("/api/v1/alerts", GET, handlers.rules, "alerts"),
    Route("/api/v1/metadata", GET, handlers.metadata, "metadata"),
    Route("/api/v1/status/buildinfo", GET_POST, handlers.passthrough, "buildinfo"),
    Route("/api/v1/format_query", GET_POST, handlers.passthrough, "format_query"),
    Route("/api/v1/parse_query", GET_POST, handlers.passthrough, "parse_query"),
    Route("/", GET, handlers.root, "root"),
    Route("/healthz", GET, handlers.healthz, "healthz"),
    Route("/readyz", GET, handlers.readyz, "readyz"),
)

HEALTH_ROUTES: tuple[Route, ...] = (
    Route("/healthz", GET, handlers.healthz, "healthz"),
    Route("/readyz", GET, handlers.readyz, "readyz"),
)


def add_routes(app: web.Application, routes: tuple[Route, ...]) -> None:
    """Register a table; aiohttp answers 405 with `Allow` for a known path and another method."""
    for route in routes:
        resource = app.router.add_resource(route.path, name=route.name)
        for method in route.methods:
            resource.add_route(method, route.handler)
