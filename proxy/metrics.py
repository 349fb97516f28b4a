"""The proxy's own Prometheus metrics (served on the metrics port); label values are bounded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "prom_keycloak_proxy_requests_total",
    "Requests answered, by route (the route table's name, never a raw path) and status code.",
    ["route", "code"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "prom_keycloak_proxy_request_duration_seconds",
    "Time to answer a request (headers sent), by route.",
    ["route"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "prom_keycloak_proxy_in_flight_requests",
    "Requests being handled now.",
    registry=REGISTRY,
)
DECISIONS = Counter(
    "prom_keycloak_proxy_authz_decisions_total",
    "Authorization outcomes: allowed, narrowed, denied, error.",
    ["outcome"],
    registry=REGISTRY,
)
KEYCLOAK_SECONDS = Histogram(
    "prom_keycloak_proxy_keycloak_request_duration_seconds",
    "Keycloak call latency, by call (jwks, discovery, uma, holdings, token, introspect, resource_set).",
    ["call"],
    registry=REGISTRY,
)
KEYCLOAK_ERRORS = Counter(
    "prom_keycloak_proxy_keycloak_errors_total",
    "Keycloak calls that failed, by call and reason (timeout, unreachable, status_5xx, status_4xx).",
    ["call", "reason"],
    registry=REGISTRY,
)
CACHE_EVENTS = Counter(
    "prom_keycloak_proxy_cache_events_total",
    "Cache lookups, by cache (allow, deny, holdings, token, resource) and result (hit, miss).",
    ["cache", "result"],
    registry=REGISTRY,
)
CACHE_SIZE = Gauge(
    "prom_keycloak_proxy_cache_entries",
    "Entries held, by cache.",
    ["cache"],
    registry=REGISTRY,
)
UPSTREAM_SECONDS = Histogram(
    "prom_keycloak_proxy_upstream_request_duration_seconds",
    "Upstream latency to response headers, by status code (or error kind).",
    ["code"],
    registry=REGISTRY,
)
QUERY_REJECTIONS = Counter(
    "prom_keycloak_proxy_query_rejections_total",
    "Queries refused before authorization, by reason (limit name, syntax).",
    ["reason"],
    registry=REGISTRY,
)
UPSTREAM_UP = Gauge(
    "prom_keycloak_proxy_upstream_up",
    "1 when the last upstream request got an HTTP answer, 0 when it could not connect.",
    registry=REGISTRY,
)
KEYCLOAK_UP = Gauge(
    "prom_keycloak_proxy_keycloak_up",
    "1 when the last Keycloak call got an answer, 0 when it failed to connect or timed out.",
    registry=REGISTRY,
)
