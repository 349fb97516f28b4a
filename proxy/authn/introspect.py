"""Optional revocation check: Keycloak's introspection endpoint, answers cached at most 30 s."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TLRUCache

from proxy import caches
from proxy.authn.identity import Identity, TokenRejected
from proxy.keycloak import unexpected
from proxy.keycloak_client import KeycloakClient
from proxy.singleflight import SingleFlight

INTROSPECT_TTL = 30.0


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
        self._answers: TLRUCache[str, _Answer] = TLRUCache(
            maxsize, ttu=lambda _k, answer, _n: answer.until, timer=clock
        )
        self._flight: SingleFlight[str, _Answer] = SingleFlight()

    async def check(self, identity: Identity) -> None:
        """Return if the token is active; TokenRejected if Keycloak says it is not."""
        answer = self._answers.get(identity.token_hash)
        caches.INTROSPECT.lookup(answer is not None)
        if answer is None:
            answer = await self._flight.do(identity.token_hash, lambda: self._ask(identity))
        if not answer.active:
            raise TokenRejected("token is no longer active")

    async def _ask(self, identity: Identity) -> _Answer:
        """One introspection call, remembered for at most 30 s and never past `exp`."""
        reply = await self._client.introspect(identity.token)
        if reply.status != 200 or not isinstance(reply.body, dict):
            raise unexpected("introspect", reply)
        answer = _Answer(
            active=reply.body.get("active") is True,
            until=min(self._clock() + INTROSPECT_TTL, identity.exp),
        )
        self._answers[identity.token_hash] = answer
        return answer
