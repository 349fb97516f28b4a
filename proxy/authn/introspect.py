"""Optional revocation check: Keycloak's introspection endpoint, answers cached at most 30 s.

Since Keycloak 26.6.2 introspection answers `{"active": false}` unless the introspecting client
(`PROXY_AUTH_CLIENT_ID`) is in the token's `aud`, which takes an audience mapper in the realm
(docs/keycloak.md). The proxy warns at start when it does not require that audience, and says
why when an inactive answer is explained by a missing audience.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from cachetools import TLRUCache

from proxy import caches
from proxy.authn.identity import Identity, TokenRejected
from proxy.keycloak import unexpected
from proxy.keycloak_client import KeycloakClient
from proxy.singleflight import SingleFlight

log = structlog.get_logger(__name__)

INTROSPECT_TTL = 30.0
AUDIENCE_LOG_EVERY = 60.0
NO_AUDIENCE = (
    "token is not active for this proxy: Keycloak 26.6.2+ introspects only tokens whose aud "
    "names the proxy's client (add an audience mapper)"
)


def audience_hint(client_id: str, audiences: frozenset[str], introspect: bool) -> None:
    """At start: introspection on while tokens need not name the proxy's client in `aud`."""
    if introspect and client_id not in audiences:
        log.error(
            "introspection_audience_unchecked",
            hint=(
                f"Keycloak 26.6.2+ answers active=false to introspection unless the token's aud "
                f"contains {client_id!r}: add an oidc-audience-mapper for it to the clients callers "
                f"use (Grafana, scripts) and set PROXY_AUTH_AUDIENCES={client_id}, or turn "
                "PROXY_AUTH_INTROSPECT off"
            ),
        )


def _audiences(identity: Identity) -> set[str]:
    aud = identity.claims.get("aud")
    return (
        {aud}
        if isinstance(aud, str)
        else {a for a in aud if isinstance(a, str)}
        if isinstance(aud, list)
        else set()
    )


@dataclass(frozen=True)
class _Answer:
    """Whether a token was active, and until when that answer may be reused (wall time)."""

    active: bool
    until: float


class Introspector:
    """Ask Keycloak whether a token is still active (catches logout, revocation, disabling)."""

    def __init__(
        self,
        client: KeycloakClient,
        *,
        maxsize: int = 10000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Introspection authenticates with the proxy's own client credentials."""
        self._client = client
        self._clock = clock
        self._answers: TLRUCache[str, _Answer] = caches.until_cache(maxsize, clock)
        self._flight: SingleFlight[str, _Answer] = SingleFlight()
        self._warned_at: float | None = None

    async def check(self, identity: Identity) -> None:
        """Return if the token is active; TokenRejected if Keycloak says it is not."""
        answer = self._answers.get(identity.token_hash)
        caches.INTROSPECT.lookup(answer is not None)
        if answer is None:
            answer = await self._flight.do(identity.token_hash, lambda: self._ask(identity))
        if not answer.active:
            if self._client.client_id not in _audiences(identity):
                self._warn_audience(identity)
                raise TokenRejected(NO_AUDIENCE)
            raise TokenRejected("token is no longer active")

    async def _ask(self, identity: Identity) -> _Answer:
        """One introspection call, remembered for at most 30 s and never past `exp`."""
        reply = await self._client.introspect(identity.token, identity.subject)
        if reply.status != 200 or not isinstance(reply.body, dict):
            raise unexpected("introspect", reply)
        answer = _Answer(
            active=reply.body.get("active") is True,
            until=min(self._clock() + INTROSPECT_TTL, identity.exp),
        )
        self._answers[identity.token_hash] = answer
        return answer

    def _warn_audience(self, identity: Identity) -> None:
        """Rate-limited: an inactive answer a missing audience explains."""
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < AUDIENCE_LOG_EVERY:
            return
        self._warned_at = now
        log.warning(
            "introspection_inactive_without_audience",
            subject=identity.subject,
            azp=identity.claims.get("azp"),
            hint=NO_AUDIENCE,
        )
