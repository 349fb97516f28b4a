"""The aiohttp application factory: middlewares, route table, and the services' lifecycle."""

from __future__ import annotations

import asyncio
import itertools
import os
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy import context, errors, logs, metrics, promql, tracing
from proxy.audit import setup as audit_setup
from proxy.config import Settings
from proxy.context import RequestContext
from proxy.hubs import default_hub_of, hub_name_problem, hubs_of
from proxy.looplag import LagMonitor
from proxy.routes import API_ROUTES, HEALTH_ROUTES, Route, Routing, add_routes
from proxy.services import SERVICES, Services, build_services

log = structlog.get_logger("proxy.request")
REQUEST_ID = "X-Request-Id"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_TYPES = {
    400: "bad_data",
    404: "not_found",
    405: "method_not_allowed",
    413: "bad_data",
    415: "bad_data",
    431: "bad_data",
}


def _error_response(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A response in Prometheus' error envelope."""
    return web.Response(
        status=status,
        body=errors.envelope(error_type, message),
        content_type="application/json",
        headers=headers,
    )


def _refusal(exc: errors.ProxyError) -> web.Response:
    """A typed error's response; its reason (and an outage's cause) goes on the log line."""
    ctx = context.current()
    if ctx is not None:
        ctx.refused(exc.message, exc.__cause__)
    return _error_response(exc.status, exc.error_type, exc.message, exc.headers)


def _promql_refusal(exc: promql.PromQLError) -> web.Response:
    """A PromQL engine error's response: counted, and the decision noted (denied or refused)."""
    if isinstance(exc, promql.QueryLimitError | promql.QuerySyntaxError):
        reason = exc.limit if isinstance(exc, promql.QueryLimitError) else "syntax"
        metrics.QUERY_REJECTIONS.labels(reason).inc()
    if isinstance(exc, promql.VerificationFailed):
        log.error("rewrite_not_verified", error=str(exc))
    ctx = context.current()
    if ctx is not None:
        ctx.decision = "denied" if isinstance(exc, promql.AccessDenied) else "refused"
    return _refusal(errors.from_promql(exc))


def error_envelope(max_url_bytes: int | None = None) -> Middleware:
    """The one place errors become responses: every error, the framework's own included, leaves
    as `{"status":"error",…}` JSON. Over-long URLs are refused before anything else runs."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if max_url_bytes is not None and len(request.raw_path) > max_url_bytes:
                raise errors.PayloadTooLarge(f"request URL over {max_url_bytes} bytes")
            return await handler(request)
        except errors.ProxyError as exc:
            return _refusal(exc)
        except promql.PromQLError as exc:
            return _promql_refusal(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            reason = exc.reason or "error"
            message = {404: "not found", 405: f"method {request.method} not allowed"}.get(exc.status, reason)
            return _error_response(exc.status, _HTTP_TYPES.get(exc.status, "error"), message, headers)
        except Exception as exc:  # unexpected: logged with its stack, never sent to the caller
            log.error("unhandled_exception", error=type(exc).__name__, stack=traceback.format_exc())
            return _error_response(500, "internal", "internal error")

    return middleware


# Request ids: a random per-process prefix and a counter (unique across workers and replicas,
# without a system call per request).
_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)
# Outcomes counted in DECISIONS; handlers note one of these, anything else counts as "other".
DECISION_OUTCOMES = frozenset(
    {"allowed", "narrowed", "filtered", "passthrough", "denied", "refused", "unauthenticated", "error"}
)
# An outcome the handler did not note, read from the status (authn failures, Keycloak outages).
_STATUS_OUTCOMES = {401: "unauthenticated", 403: "denied", 503: "error"}


def new_request_id() -> str:
    """A fresh request id."""
    return f"{_ID_PREFIX}{next(_ids):010x}"


def _request_id(request: web.Request) -> str:
    """The caller's X-Request-Id when it is short and printable, else a fresh one."""
    incoming = request.headers.get(REQUEST_ID)
    if incoming and len(incoming) <= 128 and incoming.isprintable():
        return incoming
    return new_request_id()


def request_context(
    settings: Settings, routes: tuple[Route, ...], routing: Routing | None = None
) -> Middleware:
    """The request's context (id, hub, route), CORS preflights, and at the end its metrics,
    decision count, log line and end-of-request hooks. `routing` (filled by `add_routes`) says
    which route and hub each resource serves."""
    allowed = frozenset(settings.cors_allowed_origins)
    deciding = frozenset(r.name for r in routes if r.decides)
    table: Routing = routing if routing is not None else {}
    unmatched = ("unmatched", default_hub_of(settings) or "")
    request_log = log.bind()  # resolved once: the per-request path skips structlog's lazy proxy
    in_flight = metrics.IN_FLIGHT_NOW

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route, hub = table.get(resource, unmatched) if resource is not None else unmatched
        ctx = RequestContext(_request_id(request), request.method, route, hub)
        context.enter(ctx)  # each request runs in its own task: nothing set here outlives it
        in_flight.value += 1
        try:
            if request.method == "OPTIONS" and allowed and "Origin" in request.headers:
                response: web.StreamResponse = _preflight(request, allowed)
            else:
                response = await handler(request)
            ctx.status = response.status
        finally:
            in_flight.value -= 1
            _finish(request, ctx, ctx.elapsed(), route in deciding, request_log)
        return response

    return middleware


def _finish(request: web.Request, ctx: RequestContext, elapsed: float, decides: bool, out: Any) -> None:
    """Count the request, write its log line, run the end-of-request hooks."""
    metrics.REQUESTS.labels(ctx.route, str(ctx.status), ctx.hub).inc()
    metrics.REQUEST_SECONDS.labels(ctx.route, ctx.hub).observe(elapsed)
    if decides:
        outcome = ctx.decision = ctx.decision or _STATUS_OUTCOMES.get(ctx.status)
        if outcome is not None:
            metrics.DECISIONS.labels(outcome if outcome in DECISION_OUTCOMES else "other", ctx.hub).inc()
    if logs.request_lines_enabled:
        out.info(
            "request",
            method=ctx.method,
            route=ctx.route,
            status=ctx.status,
            duration_ms=round(elapsed * 1000, 3),
            **ctx.log_fields(),
        )
    svc = request.app.get(SERVICES)
    for hook in svc.request_done if svc is not None else ():
        try:
            hook(ctx)
        except Exception as exc:  # a hook's failure never touches the answer already sent
            log.error("request_hook_failed", hook=getattr(hook, "__name__", "?"), error=repr(exc))


def response_headers_hook(settings: Settings) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Request id and CORS headers on every response, streamed ones included (set before prepare)."""
    allowed = frozenset(settings.cors_allowed_origins)

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        ctx = context.current()
        if ctx is not None:
            response.headers[REQUEST_ID] = ctx.request_id
        if allowed:
            _cors(request, response, allowed)

    return hook


def _cors(request: web.Request, response: web.StreamResponse, allowed: frozenset[str]) -> None:
    """CORS headers for an allowed origin; `*` is never combined with credentials."""
    origin = request.headers.get("Origin")
    if not origin or not allowed:
        return
    if origin in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    elif "*" in allowed:
        response.headers["Access-Control-Allow-Origin"] = "*"


def _preflight(request: web.Request, allowed: frozenset[str]) -> web.Response:
    """Answer a CORS preflight without authentication."""
    origin = request.headers.get("Origin", "")
    if origin not in allowed and "*" not in allowed:
        return _error_response(403, "forbidden", "origin not allowed")
    response = web.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Request-Id"
    response.headers["Access-Control-Max-Age"] = "600"
    _cors(request, response, allowed)
    return response


def server_limits(settings: Settings) -> dict[str, Any]:
    """HTTP options for the proxy's AppRunner: request lines long enough for PROXY_MAX_URL_BYTES
    (so oversize URLs get our 413, not the parser's 8 KiB refusal), the keep-alive idle timeout,
    and handler cancellation (a caller who disconnects leaves the queue, its upstream call is
    cancelled: docs, fair use)."""
    return {
        "max_line_size": settings.max_url_bytes + 8192,
        "max_field_size": 65536,
        "keepalive_timeout": settings.keepalive_timeout,
        "handler_cancellation": True,
    }


def create_app(
    settings: Settings, routes: tuple[Route, ...] = API_ROUTES, *, services: Services | None = None
) -> web.Application:
    """The proxy application: middlewares, the route table, and its services' lifecycle
    (built from `settings`, or the given ones: tests pass fakes)."""
    routing: Routing = {}
    middlewares: list[Middleware] = [
        request_context(settings, routes, routing),
        error_envelope(settings.max_url_bytes),
    ]
    if tracing.enabled():
        middlewares.insert(1, tracing.middleware())
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    routing.update(add_routes(app, routes, served_hubs(settings), default_hub_of(settings)))
    app.on_response_prepare.append(response_headers_hook(settings))
    audited = tuple(r.name for r in routes if r.name not in ("healthz", "readyz"))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        svc = services if services is not None else build_services(settings)
        app[SERVICES] = svc
        writer = audit_setup.install(svc, settings, audited)
        await svc.start()
        lag = LagMonitor()
        lag.start()
        yield
        await lag.stop()
        await svc.close()
        if writer is not None:
            await asyncio.to_thread(writer.close)

    app.cleanup_ctx.append(lifecycle)
    return app


def served_hubs(settings: Settings) -> tuple[str, ...]:
    """Hubs served under `/<hub>/…`: every configured hub (the env-only hub when its name can be
    a path segment; the Go proxy accepted any PROXY_ACM_HUB)."""
    return tuple(hub.name for hub in hubs_of(settings) if hub_name_problem(hub.name) is None)


async def _metrics(request: web.Request) -> web.StreamResponse:
    """`/metrics` in the Prometheus text format."""
    return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_metrics_app(proxy_app: web.Application) -> web.Application:
    """The metrics-port application: `/metrics`, `/healthz`, `/readyz` (readiness of `proxy_app`)."""
    app = web.Application(middlewares=[error_envelope()])
    add_routes(app, HEALTH_ROUTES)
    app.router.add_get("/metrics", _metrics)

    async def share(app: web.Application) -> AsyncIterator[None]:
        app[SERVICES] = proxy_app[SERVICES]
        yield

    app.cleanup_ctx.append(share)
    return app


__all__ = ["create_app", "create_metrics_app"]
