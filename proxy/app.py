"""The aiohttp application factory: middlewares, route table, and the services' lifecycle."""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy import errors, keycloak, metrics, promql
from proxy.authn import Authenticator
from proxy.authz import Authorizer
from proxy.config import Settings
from proxy.fairuse import FairUse
from proxy.handlers import LOG_FIELDS, SERVICES, Handler, Services, note, route_name
from proxy.promql.scope import LabelModel
from proxy.routes import API_ROUTES, HEALTH_ROUTES, Route, add_routes
from proxy.upstream import Upstream

log = structlog.get_logger("proxy.request")
REQUEST_ID = "X-Request-Id"


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


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error, the framework's own included, leaves as `{"status":"error",…}` JSON."""
    try:
        return await handler(request)
    except errors.ProxyError as exc:
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


def request_context(settings: Settings) -> Middleware:
    """Request id, size limits, per-request log line and metrics, CORS."""
    allowed = frozenset(settings.cors_allowed_origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(REQUEST_ID, "")
        request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        request[LOG_FIELDS] = {}
        route = route_name(request) or "unmatched"
        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        status = 500
        try:
            if len(str(request.rel_url)) > settings.max_url_bytes:
                raise errors.PayloadTooLarge(f"request URL over {settings.max_url_bytes} bytes")
            if request.method == "OPTIONS" and allowed and "Origin" in request.headers:
                response: web.StreamResponse = _preflight(request, allowed)
            else:
                response = await handler(request)
            status = response.status
        except errors.ProxyError as exc:
            response = _error_response(exc.status, exc.error_type, exc.message, exc.headers)
            status = exc.status
        finally:
            metrics.IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            metrics.REQUESTS.labels(route, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(route).observe(elapsed)
            log.info(
                "request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                **request.get(LOG_FIELDS, {}),
            )
        return response

    return middleware


def response_headers_hook(settings: Settings) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Request id and CORS headers on every response, streamed ones included (set before prepare)."""
    allowed = frozenset(settings.cors_allowed_origins)

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            response.headers[REQUEST_ID] = str(request_id)
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


def build_services(settings: Settings) -> Services:
    """Construct the services (sessions are opened later, in the cleanup context)."""
    kc_session = keycloak.create_session(settings)
    authn = Authenticator(settings, kc_session)
    authz = Authorizer(settings, kc_session, authn)
    svc = Services(
        settings=settings,
        upstream=Upstream(settings),
        authn=authn,
        authz=authz,
        fair_use=FairUse(
            settings.rate_per_subject,
            settings.rate_burst_per_subject,
            settings.max_concurrent_per_subject,
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


def server_limits(settings: Settings) -> dict[str, int]:
    """HTTP parser limits for the proxy's AppRunner: request lines long enough for
    PROXY_MAX_URL_BYTES (so oversize URLs get our 413, not the parser's 8 KiB refusal)."""
    return {"max_line_size": settings.max_url_bytes + 8192, "max_field_size": 65536}


def create_app(settings: Settings, routes: tuple[Route, ...] = API_ROUTES) -> web.Application:
    """The proxy application: middlewares, the route table, and its services' lifecycle."""
    app = web.Application(
        middlewares=[request_context(settings), error_envelope],
        client_max_size=settings.max_body_bytes,
    )
    add_routes(app, routes)
    app.on_response_prepare.append(response_headers_hook(settings))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        svc = build_services(settings)
        app[SERVICES] = svc
        await svc.upstream.start()
        await svc.authn.start()
        yield
        await svc.authz.close()
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
