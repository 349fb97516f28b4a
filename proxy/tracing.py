"""OpenTelemetry tracing, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

A server span per request (parent taken from the caller's W3C `traceparent`), and client spans
for Keycloak and upstream calls through an `aiohttp.TraceConfig`, which also sends `traceparent`
onward. When tracing is off nothing here runs on the request path: the middleware is not
installed and sessions get no trace configs. The OpenTelemetry SDK is imported only when on.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy import context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

SERVICE_NAME = "prom-keycloak-proxy"

_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def enabled() -> bool:
    """Whether tracing is on in this process."""
    return _tracer is not None


def setup(environ: Mapping[str, str]) -> bool:
    """Turn tracing on, exporting over OTLP/HTTP, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set."""
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not base:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or base.rstrip("/") + "/v1/traces"
    provider = TracerProvider(
        resource=Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    install(provider)
    return True


def install(provider: TracerProvider) -> None:
    """Trace with `provider` (tests pass one with an in-memory exporter); apps built later use it."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("proxy")


def uninstall() -> None:
    """Turn tracing off for apps and sessions built from now on (tests)."""
    global _tracer, _provider
    _tracer = _provider = None


def shutdown() -> None:
    """Flush pending spans and stop the exporter (at process exit)."""
    if _provider is not None:
        _provider.shutdown()
    uninstall()


def _route(request: web.Request) -> tuple[str, str]:
    """(route name, path template) of the matched route; ("unmatched", "") otherwise."""
    resource = request.match_info.route.resource
    if resource is None or not resource.name:
        return "unmatched", ""
    return resource.name, resource.canonical


def middleware() -> Middleware:
    """The server-span middleware; install it only when `enabled()`."""
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    assert _tracer is not None
    tracer, propagator = _tracer, TraceContextTextMapPropagator()

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        route, template = _route(request)
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "proxy.route": route,
            "url.scheme": request.scheme,
        }
        if template:
            attributes["http.route"] = template
        with tracer.start_as_current_span(
            f"{request.method} {template}" if template else request.method,
            context=propagator.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:
            ctx = context.current()
            if ctx is not None:
                ctx.trace_id = format(span.get_span_context().trace_id, "032x")
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            if ctx is not None:
                if ctx.subject is not None:
                    span.set_attribute("proxy.subject", ctx.subject)
                if ctx.decision is not None:
                    span.set_attribute("proxy.decision", ctx.decision)
            return response

    return traced


def client_trace_configs(peer: str) -> list[aiohttp.TraceConfig]:
    """Trace configs for a `ClientSession` talking to `peer` ("keycloak", "upstream"); [] when off."""
    if _tracer is None:
        return []
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    tracer, propagator = _tracer, TraceContextTextMapPropagator()

    async def on_start(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        url = params.url
        span = tracer.start_span(
            f"{params.method} {peer}",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": params.method,
                "server.address": url.host or "",
                "server.port": url.port or 0,
                # Never the query string (PromQL) or user info.
                "url.full": str(url.with_user(None).with_query(None).with_fragment(None)),
                "peer.service": peer,
            },
        )
        ctx.otel_span = span
        # W3C trace context of this client span replaces whatever the caller sent.
        propagator.inject(params.headers, context=set_span_in_context(span))

    async def on_end(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        span = getattr(ctx, "otel_span", None)
        if span is not None:
            status = params.response.status
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()

    async def on_error(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        span = getattr(ctx, "otel_span", None)
        if span is not None:
            span.set_attribute("error.type", type(params.exception).__name__)
            span.set_status(Status(StatusCode.ERROR, type(params.exception).__name__))
            span.end()

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_error)
    return [config]
