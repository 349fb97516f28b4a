"""The one Keycloak client: session, realm endpoints, the proxy's credentials and time limit.

Authentication (service token, introspection, Basic minting), authorization (UMA grant,
Protection API) and the proxy's own token all call Keycloak through this object, so the
credentials are sent in one place (`_with_credentials`) and every answer the proxy cannot use
is mapped in one place (`proxy.keycloak.unexpected`). See docs/security.md#keycloak.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote_plus

import aiohttp
import structlog
from cachetools import TTLCache

from proxy.config import Settings
from proxy.filewatch import Secret
from proxy.keycloak import Endpoints, Form, Reply, call, challenge, same_origin, unexpected
from proxy.keycloak_load import KeycloakLoad
from proxy.singleflight import SingleFlight

log = structlog.get_logger(__name__)

# Renew this long before expiry so a token never expires between check and use.
REUSE_MARGIN = 30.0
UMA_GRANT = "urn:ietf:params:oauth:grant-type:uma-ticket"


@dataclass(frozen=True)
class Minted:
    """A freshly minted access token and Keycloak's own `expires_in`."""

    token: str
    expires_in: float


@dataclass(frozen=True)
class Discovery:
    """What the proxy takes from the realm's OIDC discovery document."""

    issuer: str
    jwks_uri: str


def reuse_until(now: float, exp: float) -> float:
    """When to stop reusing a token: shortly before `exp` (half its remaining life at most)."""
    return exp - min(REUSE_MARGIN, max(0.0, exp - now) / 2)


def minted(reply: Reply) -> Minted | None:
    """The token of a 200 token-endpoint answer, or None if the answer carries none."""
    body = reply.body
    if reply.status != 200 or not isinstance(body, dict):
        return None
    token, expires_in = body.get("access_token"), body.get("expires_in", 60)
    if not isinstance(token, str) or not token:
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = 60
    return Minted(token, float(expires_in))


POST, BASIC = "client_secret_post", "client_secret_basic"
# A learned secret method is re-checked now and then (a client's registration may change).
METHOD_TTL = 3600.0
# Keycloak's answers when the client's own authentication failed (reference: ClientIdAndSecret-
# Authenticator, TokenIntrospectionEndpoint): worth one try with the other method.
_CLIENT_ERRORS = frozenset({"unauthorized_client", "invalid_client", "invalid_request"})


def _client_refused(reply: Reply) -> bool:
    """Whether Keycloak refused the calling client's credentials (not the grant itself)."""
    return reply.status in (400, 401) and reply.error in _CLIENT_ERRORS


def _form(form: Form, client_id: str, secret: str, method: str) -> Form:
    """The form with the credentials in it (post), or with just the client id (basic)."""
    if method == POST:
        return [*form, ("client_id", client_id), ("client_secret", secret)]
    return list(form)


def _headers(client_id: str, secret: str, method: str) -> dict[str, str]:
    """`Authorization: Basic` with id and secret form-urlencoded first (RFC 6749 §2.3.1), so
    `+`, `%` and `:` survive Keycloak's URL-decoding of both."""
    if method != BASIC:
        return {}
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _bearer(token: str) -> dict[str, str]:
    """Per-request Authorization header: never set on the shared session, which every caller uses."""
    return {"Authorization": f"Bearer {token}"}


class KeycloakClient:
    """One realm's back channel for one resource-server client."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        *,
        client_id: str | None = None,
        secret: Secret | str | None = None,
        clock: Callable[[], float] = time.monotonic,
        load: KeycloakLoad | None = None,
    ) -> None:
        """Endpoints and limits from `settings`; the client defaults to `PROXY_AUTH_CLIENT_ID`.

        The secret is asked for at every use: one read from a file follows its rotation.

        `load` bounds concurrent calls (share one between the clients of a process)."""
        self.session = session
        self.endpoints = Endpoints.from_settings(settings)
        self.base_url = settings.auth_base_url
        self.realm = settings.auth_realm
        self.challenge = challenge(settings.auth_realm)
        self.client_id = client_id or settings.auth_client_id
        if secret is None:
            secret = settings.secret("auth_client_secret")
        self._secret = secret if isinstance(secret, Secret) else Secret(secret)
        self.timeout = settings.auth_timeout
        self._clock = clock
        self._pat: str | None = None
        self._pat_until = 0.0
        self._pat_flight: SingleFlight[str, str] = SingleFlight()
        self.discovery: Discovery | None = None
        self.load = load or KeycloakLoad(
            settings.auth_max_concurrency,
            settings.auth_max_concurrent_per_subject,
            settings.auth_cold_decisions_per_minute,
        )
        # Which secret method Keycloak accepts, learned per client id (docs/keycloak.md).
        self._methods: TTLCache[str, str] = TTLCache(10000, ttl=METHOD_TTL, timer=clock)

    async def call(
        self,
        name: str,
        method: str,
        url: str,
        *,
        data: Form | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        subject: str | None = None,
    ) -> Reply:
        """One call within the configured time limit (see `proxy.keycloak.call`), holding one of
        the load's slots (and one of `subject`'s) while it runs."""
        async with self.load.slot(subject):
            return await call(
                self.session,
                name,
                method,
                url,
                time_limit=self.timeout,
                data=data,
                params=params,
                headers=headers,
            )

    async def _authenticated(
        self, name: str, url: str, form: Form, client_id: str, secret: str, subject: str | None
    ) -> Reply:
        """The one place client credentials go on the wire, sent the way Keycloak accepts them.

        Since 26.6 a client registered for `client_secret_basic` accepts only the header and one
        for `client_secret_post` only the form. The form goes first; when Keycloak refuses the
        client's authentication, the header is tried once, and whichever worked is remembered for
        that client id (then only it is tried). One attempt is one failure, whatever it took.
        """

        async def attempt(method: str) -> Reply | None:
            reply = await self.call(
                name,
                "POST",
                url,
                data=_form(form, client_id, secret, method),
                headers=_headers(client_id, secret, method),
                subject=subject,
            )
            if _client_refused(reply):
                refused.append(reply)
                return None
            self._methods[client_id] = method
            return reply

        refused: list[Reply] = []
        learned = self._methods.get(client_id)
        first = learned or POST
        if (reply := await attempt(first)) is not None:
            return reply
        # Not learned yet: the other method once. (A learned method that is refused means a wrong
        # secret, not a wrong method, so a guesser costs Keycloak one call per guess.)
        if learned is None and (reply := await attempt(BASIC if first == POST else POST)) is not None:
            return reply
        return refused[0]

    async def client_credentials(self, client_id: str, secret: str) -> Reply:
        """One client-credentials grant for any client; the raw answer, interpreted by the caller."""
        form = [("grant_type", "client_credentials")]
        return await self._authenticated("token", self.endpoints.token, form, client_id, secret, client_id)

    async def introspect(self, token: str, subject: str | None = None) -> Reply:
        """Introspection of a caller's token, authenticated as the proxy's client."""
        url = self.endpoints.introspect
        return await self._authenticated(
            "introspect", url, [("token", token)], self.client_id, self._secret.get() or "", subject
        )

    async def uma(
        self, kind: str, token: str, permissions: Sequence[str], subject: str | None = None
    ) -> Reply:
        """The UMA grant in `permissions` mode, with the caller's token as bearer."""
        form = [
            ("grant_type", UMA_GRANT),
            ("audience", self.client_id),
            ("response_mode", "permissions"),
            *(("permission", permission) for permission in permissions),
        ]
        return await self.call(
            kind, "POST", self.endpoints.token, data=form, headers=_bearer(token), subject=subject
        )

    async def protection(self, name: str, url: str, params: Mapping[str, str]) -> Reply:
        """A Protection API GET with the proxy's token, retried once with a new one if rejected."""
        token = await self.service_token()
        reply = await self.call(name, "GET", url, params=params, headers=_bearer(token))
        if reply.status == 401:
            self.drop_service_token(token)
            token = await self.service_token()
            reply = await self.call(name, "GET", url, params=params, headers=_bearer(token))
        return reply

    async def service_token(self) -> str:
        """The proxy's own token (PAT), shared until shortly before expiry; unavailable if none."""
        if self._pat is not None and self._clock() < self._pat_until:
            return self._pat
        return await self._pat_flight.do("pat", self._mint_pat)

    def drop_service_token(self, token: str) -> None:
        """Forget `token` after Keycloak rejected it, so the next `service_token()` mints anew."""
        if self._pat == token:
            self._pat = None

    async def _mint_pat(self) -> str:
        """Mint and remember the proxy's token."""
        reply = await self.client_credentials(self.client_id, self._secret.get() or "")
        result = minted(reply)
        if result is None:
            if reply.status in (400, 401):
                log.error(
                    "proxy_client_credentials_rejected",
                    status=reply.status,
                    error=reply.error,
                    error_description=reply.description,
                )
            raise unexpected("token", reply)
        now = self._clock()
        self._pat, self._pat_until = result.token, reuse_until(now, now + result.expires_in)
        return result.token

    async def discover(self) -> Discovery:
        """Discovery (fetched once); its `jwks_uri` is used only on the back-channel origin."""
        if self.discovery is not None:
            return self.discovery
        reply = await self.call("discovery", "GET", self.endpoints.discovery)
        body = reply.body
        if reply.status != 200 or not isinstance(body, dict):
            raise unexpected("discovery", reply)
        issuer, jwks_uri = body.get("issuer"), body.get("jwks_uri")
        if not isinstance(issuer, str) or not issuer:
            raise unexpected("discovery", Reply(reply.status, None))
        # Keycloak publishes its front-end hostname when configured to; that name may not resolve
        # inside the cluster, so fall back to the back-channel certs URL of the same realm.
        if not isinstance(jwks_uri, str) or not same_origin(jwks_uri, self.base_url):
            jwks_uri = self.endpoints.certs
        self.discovery = Discovery(issuer=issuer, jwks_uri=jwks_uri)
        return self.discovery

    async def jwks(self) -> Reply:
        """The realm's key set, from discovery's `jwks_uri`."""
        discovery = await self.discover()
        return await self.call("jwks", "GET", discovery.jwks_uri)
