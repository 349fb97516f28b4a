"""The client-credentials grant, and the proxy's own token (PAT) kept fresh for the Protection API."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog

from proxy.keycloak import Endpoints, Reply, call, unexpected
from proxy.singleflight import SingleFlight

log = structlog.get_logger(__name__)

# Renew this long before expiry so a token never expires between check and use.
REUSE_MARGIN = 30.0


@dataclass(frozen=True)
class Minted:
    """A freshly minted access token and Keycloak's own `expires_in`."""

    token: str
    expires_in: float


def reuse_until(now: float, exp: float) -> float:
    """When to stop reusing a token: shortly before `exp` (half its remaining life at most)."""
    return exp - min(REUSE_MARGIN, max(0.0, exp - now) / 2)


async def client_credentials(
    session: aiohttp.ClientSession,
    endpoints: Endpoints,
    client_id: str,
    secret: str,
    *,
    time_limit: float,
) -> Reply:
    """One client-credentials grant; the raw answer, interpreted by the caller."""
    # Credentials in the form body (client_secret_post): no ambiguity about `:` or URL-encoding
    # inside the secret, which the Basic header form has across Keycloak versions.
    form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", secret),
    ]
    return await call(session, "token", "POST", endpoints.token, time_limit=time_limit, data=form)


def minted(reply: Reply) -> Minted | None:
    """The token of a 200 answer, or None if the answer carries none."""
    body = reply.body
    if reply.status != 200 or not isinstance(body, dict):
        return None
    token, expires_in = body.get("access_token"), body.get("expires_in", 60)
    if not isinstance(token, str) or not token:
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = 60
    return Minted(token, float(expires_in))


class ServiceToken:
    """The proxy's own access token (the PAT), minted once and shared until shortly before expiry."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoints: Endpoints,
        client_id: str,
        secret: str,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Credentials of the resource-server client itself."""
        self._session = session
        self._endpoints = endpoints
        self._client_id = client_id
        self._secret = secret
        self._timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._until = 0.0
        self._flight: SingleFlight[str, str] = SingleFlight()

    async def get(self) -> str:
        """A valid token of the proxy's client; KeycloakUnavailable if none can be had."""
        if self._token is not None and self._clock() < self._until:
            return self._token
        return await self._flight.do("pat", self._mint)

    def drop(self, token: str) -> None:
        """Forget `token` after Keycloak rejected it, so the next `get()` mints anew."""
        if self._token == token:
            self._token = None

    async def _mint(self) -> str:
        """Mint and remember a new token."""
        reply = await client_credentials(
            self._session, self._endpoints, self._client_id, self._secret, time_limit=self._timeout
        )
        result = minted(reply)
        if result is None:
            if reply.status in (400, 401):
                log.error("proxy_client_credentials_rejected", error=reply.error)
            raise unexpected("token", reply)
        now = self._clock()
        self._token, self._until = result.token, reuse_until(now, now + result.expires_in)
        return result.token
