"""The UMA grant in `permissions` mode, with the caller's token as bearer (SPEC §4.2).

Never `response_mode=decision` (true when *any* permission is granted), never python-keycloak's
`uma_permissions` (it swaps the bearer on shared headers, leaking tokens across calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from proxy.errors import Unauthorized
from proxy.keycloak import Endpoints, Reply, call, challenge, unexpected

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:uma-ticket"
SCOPE = "GET"


class UnknownResource(Exception):
    """Keycloak said a resource the proxy resolved does not exist (resolved ids are stale)."""


@dataclass(frozen=True)
class Grant:
    """One granted resource with scope GET, as Keycloak returned it."""

    rsid: str
    rsname: str | None


class UmaClient:
    """Ask Keycloak which of the resource server's resources a token holds."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoints: Endpoints,
        audience: str,
        realm: str,
        timeout: float,
    ) -> None:
        """`audience` is the resource-server client id."""
        self._session = session
        self._url = endpoints.token
        self._audience = audience
        self._challenge = challenge(realm)
        self._timeout = timeout

    async def granted(self, token: str, names: Sequence[str] | None) -> list[Grant]:
        """Granted resources among `names`, or among everything when `names` is None."""
        form = [
            ("grant_type", GRANT_TYPE),
            ("audience", self._audience),
            ("response_mode", "permissions"),
        ]
        if names is None:
            form.append(("permission", f"#{SCOPE}"))
        else:
            form.extend(("permission", f"{name}#{SCOPE}") for name in names)
        kind = "holdings" if names is None else "uma"
        reply = await call(
            self._session,
            kind,
            "POST",
            self._url,
            time_limit=self._timeout,
            data=form,
            # Per request, never on the shared session: each call carries its own caller's token.
            headers={"Authorization": f"Bearer {token}"},
        )
        return self._interpret(kind, reply)

    def _interpret(self, kind: str, reply: Reply) -> list[Grant]:
        """200 → the GET grants; 403 access_denied → none; 401 → Unauthorized; else unavailable."""
        if reply.status == 200 and isinstance(reply.body, list):
            return [grant for item in reply.body if (grant := _grant(item)) is not None]
        if reply.status == 403 and reply.error == "access_denied":
            return []
        if reply.status == 401:
            raise Unauthorized("Keycloak rejected the token", headers=dict(self._challenge))
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
