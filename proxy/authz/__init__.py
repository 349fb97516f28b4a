"""Authorization: which HUB/CLUSTER/PROJECT resources a caller holds, asked of Keycloak (UMA)."""

from proxy.authz.authorizer import Authorizer

__all__ = ["Authorizer"]
