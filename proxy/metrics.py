"""The proxy's own Prometheus metrics (served on the metrics port); label values are bounded.

Metrics only count: what a request did goes on its log line through `proxy.context`, explicitly.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
# process_* (CPU, memory, open fds, start time) of this worker.
ProcessCollector(registry=REGISTRY)
# Request latencies reach the upstream timeout (120 s by default), far past the default buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


REQUESTS = Counter(
    "prom_keycloak_proxy_requests_total",
    "Requests answered, by route (the route table's name, never a raw path), status code and hub.",
    ["route", "code", "hub"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "prom_keycloak_proxy_request_duration_seconds",
    "Time to answer a request (headers sent), by route and hub.",
    ["route", "hub"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "prom_keycloak_proxy_in_flight_requests",
    "Requests being handled now.",
    registry=REGISTRY,
)


class _Count:
    """A plain counter the request path adjusts (no lock, no validation), read at scrape time."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


# The request middleware counts requests in flight here; the gauge reads it when scraped.
IN_FLIGHT_NOW = _Count()
IN_FLIGHT.set_function(lambda: IN_FLIGHT_NOW.value)
DECISIONS = Counter(
    "prom_keycloak_proxy_authz_decisions_total",
    "Authorization outcomes: allowed, narrowed, filtered, passthrough, denied, refused (guard or "
    "parse), unauthenticated, error (Keycloak unavailable); by hub.",
    ["outcome", "hub"],
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
# Cache events and entries are exported by proxy/caches.py (counted there, read when scraped).
UPSTREAM_SECONDS = Histogram(
    "prom_keycloak_proxy_upstream_request_duration_seconds",
    "Upstream latency to response headers, by status code (or error kind) and hub.",
    ["code", "hub"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RESULTS_CACHE_REQUESTS = Counter(
    "prom_keycloak_proxy_results_cache_requests_total",
    "Query requests by what the results cache did: hit, partial, miss, bypass, off (docs/caching.md)",
    ["hub", "result"],
    registry=REGISTRY,
)
QUERY_REJECTIONS = Counter(
    "prom_keycloak_proxy_query_rejections_total",
    "Queries refused before authorization, by reason (limit name, syntax).",
    ["reason"],
    registry=REGISTRY,
)
COALESCED = Counter(
    "prom_keycloak_proxy_coalesced_requests_total",
    "Requests served an identical request's upstream answer instead of sending their own, by hub.",
    ["hub"],
    registry=REGISTRY,
)
UPSTREAM_UP = Gauge(
    "prom_keycloak_proxy_upstream_up",
    "1 when the last upstream request got an HTTP answer, 0 when it could not connect"
    " (with several hubs: 0 when any hub's last request could not connect).",
    registry=REGISTRY,
)
HUB_UPSTREAM_UP = Gauge(
    "prom_keycloak_proxy_hub_upstream_up",
    "Per hub: 1 when the hub's last upstream request got an HTTP answer, 0 when it could not connect.",
    ["hub"],
    registry=REGISTRY,
)
KEYCLOAK_UP = Gauge(
    "prom_keycloak_proxy_keycloak_up",
    "1 when the last Keycloak call got an answer, 0 when it failed to connect or timed out.",
    registry=REGISTRY,
)
WORKER = Gauge(
    "prom_keycloak_proxy_worker_info",
    "1, labelled with this process's worker index (0 … PROXY_WORKERS-1).",
    ["worker"],
    registry=REGISTRY,
)
# The results cache's storage (proxy/results/backends.py); requests and outcomes are counted by the
# orchestrator.
RESULTS_CACHE_BYTES = Gauge(
    "prom_keycloak_proxy_results_cache_bytes",
    "Bytes the in-process results cache holds (keys and compressed answers), by backend.",
    ["backend"],
    registry=REGISTRY,
)
RESULTS_CACHE_EVICTIONS = Counter(
    "prom_keycloak_proxy_results_cache_evictions_total",
    "Results-cache entries dropped to make room (not expiries), by backend.",
    ["backend"],
    registry=REGISTRY,
)
RESULTS_CACHE_ERRORS = Counter(
    "prom_keycloak_proxy_results_cache_errors_total",
    "Results-cache calls answered as a miss or not stored, by backend and kind (timeout, error,"
    " forged, too_large).",
    ["backend", "kind"],
    registry=REGISTRY,
)
