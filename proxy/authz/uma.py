"""The UMA grant in `permissions` mode, the caller's token as bearer (docs/keycloak.md).

Never `response_mode=decision` (true when *any* permission is granted), never python-keycloak's
`uma_permissions` (it swaps the bearer on shared headers, leaking tokens across calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from proxy.errors import Unauthorized
from proxy.keycloak import Reply, unexpected
from proxy.keycloak_client import KeycloakClient
from proxy.naming import SCOPE

log = structlog.get_logger(__name__)


class UnknownResource(Exception):
    """Keycloak said a resource the proxy resolved does not exist (resolved ids are stale)."""


@dataclass(frozen=True)
class Grant:
    """One granted resource with scope GET, as Keycloak returned it."""

    rsid: str
    rsname: str | None


async def granted(
    client: KeycloakClient, token: str, names: Sequence[str] | None, subject: str | None = None
) -> list[Grant]:
    """Granted resources among `names`, or among everything when `names` is None; the call holds
    one of `subject`'s Keycloak slots."""
    if names is None:
        # `#GET` alone: Keycloak evaluates every resource and returns all the caller holds.
        kind, permissions = "holdings", [f"#{SCOPE}"]
    else:
        kind, permissions = "uma", [f"{name}#{SCOPE}" for name in names]
    reply = await client.uma(kind, token, permissions, subject)
    return _interpret(client, kind, reply)


def _interpret(client: KeycloakClient, kind: str, reply: Reply) -> list[Grant]:
    """200 → the GET grants; 403 access_denied → none; `invalid_grant` or 401 → Unauthorized;
    anything else unavailable."""
    if reply.status == 200 and isinstance(reply.body, list):
        return [grant for item in reply.body if (grant := _grant(item)) is not None]
    if reply.status == 403 and reply.error == "access_denied":
        return []
    if reply.status == 401 or (reply.status < 500 and reply.error == "invalid_grant"):
        # The token is no longer valid (user disabled, session ended): 400 since Keycloak 26.6.0,
        # 401 before. The caller must re-authenticate, not retry (docs/keycloak.md).
        log.info(
            "keycloak_refused_token",
            call=kind,
            status=reply.status,
            error=reply.error,
            error_description=reply.description,
        )
        raise Unauthorized("Keycloak rejected the token", headers=dict(client.challenge))
    if reply.status == 400 and reply.error == "invalid_resource":
        # Still unavailable for this request, but the resolver must look again next time.
        raise UnknownResource(str(unexpected(kind, reply)))
    raise unexpected(kind, reply)


def _grant(item: object) -> Grant | None:
    """A permission entry that grants GET, or None."""
    if not isinstance(item, dict):
        return None
    rsid, rsname, scopes = item.get("rsid"), item.get("rsname"), item.get("scopes")
    if not isinstance(rsid, str) or not rsid:
        return None
    if not isinstance(scopes, list) or SCOPE not in scopes:
        return None
    return Grant(rsid, rsname if isinstance(rsname, str) else None)
