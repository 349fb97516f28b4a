"""Demo and test environment: throw-away PKI, a GPU dataset and a real Prometheus on loopback.

Never imported by the request path (docs/README.md#architecture); used by the demo and the tests.
"""

from proxy_demo.certs import CertPair, Pki
from proxy_demo.dataset import CLUSTERS, HUB, NAMESPACES, Series, build_dataset, to_openmetrics
from proxy_demo.prometheus import (
    DEMO_RULES,
    PrometheusServer,
    PrometheusStartError,
    PrometheusUnavailable,
    ensure_prometheus,
)

__all__ = [
    "CLUSTERS",
    "DEMO_RULES",
    "HUB",
    "NAMESPACES",
    "CertPair",
    "Pki",
    "PrometheusServer",
    "PrometheusStartError",
    "PrometheusUnavailable",
    "Series",
    "build_dataset",
    "ensure_prometheus",
    "to_openmetrics",
]
