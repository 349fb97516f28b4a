"""The aiohttp application factory: middlewares, route table, and the services' lifecycle."""

from __future__ import annotations

import itertools
import os
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy import errors, keycloak, logs, metrics, promql, tracing
from proxy.authn import Authenticator
from proxy.authz import Authorizer
from proxy.config import Settings
from proxy.handlers import LOG_FIELDS, SERVICES, Handler, Services, note
from proxy.keycloak_client import KeycloakClient
from proxy.looplag import LagMonitor
from proxy.promql.scope import LabelModel
from proxy.routes import API_ROUTES, HEALTH_ROUTES, Route, add_routes
from proxy.scheduler import Scheduler
from proxy.timing import CURRENT_FIELDS
from proxy.upstream import Upstream

log = structlog.get_logger("proxy.request")
REQUEST_ID = "X-Request-Id"
REQUEST_ID_KEY = web.RequestKey("request_id", str)


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


_HTTP_TYPES = {
    400: "bad_data",
    404: "not_found",
    405: "method_not_allowed",
    413: "bad_data",
    415: "bad_data",
    431: "bad_data",
}


def _note_error(exc: errors.ProxyError) -> None:
    """Put the refusal's reason (and for outages its underlying cause) on the request's log line."""
    fields = CURRENT_FIELDS.get()
    if fields is not None:
        fields["error"] = exc.message
        if exc.__cause__ is not None:
            fields["cause"] = type(exc.__cause__).__name__


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error, the framework's own included, leaves as `{"status":"error",…}` JSON."""
    try:
        return await handler(request)
    except errors.ProxyError as exc:
        _note_error(exc)
        return _error_response(exc.status, exc.error_type, exc.message, exc.headers)
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
# Routes that never authorize: no decision is counted for them.
_NO_DECISION_ROUTES = frozenset({"root", "healthz", "readyz", "unmatched"})


def new_request_id() -> str:
    """A fresh request id."""
    return f"{_ID_PREFIX}{next(_ids):010x}"


def request_context(settings: Settings) -> Middleware:
    """Request id, size limits, per-request log line and metrics, CORS."""
    allowed = frozenset(settings.cors_allowed_origins)
    max_url = settings.max_url_bytes
    request_log = log.bind()  # resolved once: the per-request path skips structlog's lazy proxy
    # Label children resolved once per (route, code): no lock or tuple per request.
    counted: dict[tuple[str, int], Any] = {}
    timed_routes: dict[str, Any] = {}
    in_flight = metrics.IN_FLIGHT_NOW

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(REQUEST_ID)
        request_id = (
            incoming
            if incoming and len(incoming) <= 128 and incoming.isprintable()
            else new_request_id()
        )
        # Each request runs in its own task (and context): nothing bound here outlives it.
        structlog.contextvars.bind_contextvars(request_id=request_id)
        request[REQUEST_ID_KEY] = request_id
        fields: dict[str, Any] = {}
        request[LOG_FIELDS] = fields
        CURRENT_FIELDS.set(fields)
        resource = request.match_info.route.resource
        route = (resource.name if resource is not None else None) or "unmatched"
        started = time.perf_counter()
        in_flight.value += 1
        status = 500
        try:
            if len(request.raw_path) > max_url:
                raise errors.PayloadTooLarge(f"request URL over {max_url} bytes")
            if request.method == "OPTIONS" and allowed and "Origin" in request.headers:
                response: web.StreamResponse = _preflight(request, allowed)
            else:
                response = await handler(request)
            status = response.status
        except errors.ProxyError as exc:
            _note_error(exc)
            response = _error_response(exc.status, exc.error_type, exc.message, exc.headers)
            status = exc.status
        finally:
            in_flight.value -= 1
            elapsed = time.perf_counter() - started
            key = (route, status)
            child = counted.get(key)
            if child is None:
                child = counted[key] = metrics.REQUESTS.labels(route, str(status))
            child.inc()
            seconds = timed_routes.get(route)
            if seconds is None:
                seconds = timed_routes[route] = metrics.REQUEST_SECONDS.labels(route)
            seconds.observe(elapsed)
            if route not in _NO_DECISION_ROUTES:
                _count_decision(fields, status)
            if logs.request_lines_enabled:
                request_log.info(
                    "request",
                    method=request.method,
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                    **fields,
                )
        return response

    return middleware


def response_headers_hook(settings: Settings) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Request id and CORS headers on every response, streamed ones included (set before prepare)."""
    allowed = frozenset(settings.cors_allowed_origins)

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        request_id = request.get(REQUEST_ID_KEY)
        if request_id:
            response.headers[REQUEST_ID] = request_id
        if allowed:
            _cors(request, response, allowed)

    return hook


def _count_decision(fields: dict[str, Any], status: int) -> None:
    """Count the request's authorization outcome (noted by the handler, else read from the status)."""
    outcome = fields.get("decision") or _STATUS_OUTCOMES.get(status)
    if outcome is None:
        return
    fields.setdefault("decision", outcome)
    metrics.DECISIONS.labels(outcome if outcome in DECISION_OUTCOMES else "other").inc()


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


def build_services(settings: Settings) -> Services:
    """Construct the services (sessions are opened later, in the cleanup context)."""
    kc_session = keycloak.create_session(settings)
    kc = KeycloakClient(settings, kc_session)
    authn = Authenticator(settings, kc)
    authz = Authorizer(settings, kc)
    svc = Services(
        settings=settings,
        upstream=Upstream(settings),
        authn=authn,
        authz=authz,
        scheduler=Scheduler(
            hub_capacity=settings.max_upstream_concurrency,
            per_subject=settings.max_concurrent_per_subject,
            max_queued=settings.max_queued_per_subject,
            max_wait=settings.max_queue_wait,
            rate=settings.rate_per_subject,
            burst=settings.rate_burst_per_subject,
        ),
        limits=promql.Limits(
            max_bytes=settings.max_query_bytes,
            max_depth=settings.max_query_depth,
            max_operators=settings.max_query_operators,
            max_regex_cost=settings.max_regex_cost,
        ),
        model=LabelModel(
            cluster_label=settings.cluster_label,
            project_labels=settings.project_labels,
            project_label_metrics=dict(settings.project_label_metrics),
        ),
    )
    svc.extra["keycloak_session"] = kc_session
    return svc


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


def create_app(settings: Settings, routes: tuple[Route, ...] = API_ROUTES) -> web.Application:
    """The proxy application: middlewares, the route table, and its services' lifecycle."""
    middlewares: list[Middleware] = [request_context(settings), error_envelope]
    if tracing.enabled():
        middlewares.insert(1, tracing.middleware())
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    add_routes(app, routes)
    app.on_response_prepare.append(response_headers_hook(settings))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        svc = build_services(settings)
        app[SERVICES] = svc
        await svc.upstream.start()
        await svc.authn.start()
        lag = LagMonitor()
        lag.start()
        yield
        await lag.stop()
        await svc.authn.close()
        await svc.upstream.close()
        await svc.extra["keycloak_session"].close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _metrics(request: web.Request) -> web.StreamResponse:
    """`/metrics` in the Prometheus text format."""
    return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_metrics_app(proxy_app: web.Application) -> web.Application:
    """The metrics-port application: `/metrics`, `/healthz`, `/readyz` (readiness of `proxy_app`)."""
    app = web.Application(middlewares=[error_envelope])
    add_routes(app, HEALTH_ROUTES)
    app.router.add_get("/metrics", _metrics)

    async def share(app: web.Application) -> AsyncIterator[None]:
        app[SERVICES] = proxy_app[SERVICES]
        yield

    app.cleanup_ctx.append(share)
    return app


__all__ = ["create_app", "create_metrics_app", "note"]
