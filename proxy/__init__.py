"""prom-keycloak-proxy: an authorizing PromQL proxy backed by Keycloak UMA permissions."""

__version__ = "0.1.0"
