"""A small scriptable Keycloak realm for authn tests: discovery, JWKS, token and introspection.

It produces the edge cases a faithful emulator cannot (broken JWKS, slow or failing answers).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

REALM = "nerc"
PROXY_CLIENT = "prom-keycloak-proxy"
PROXY_SECRET = "proxy-secret"


def new_rsa() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class SigningKey:
    """A realm key: its kid, private key and JWKS `use`."""

    kid: str
    private: rsa.RSAPrivateKey
    use: str = "sig"

    def jwk(self) -> dict[str, Any]:
        """The public JWK of this key, as Keycloak publishes it."""
        data: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        alg = "RS256" if self.use == "sig" else "RSA-OAEP"
        return {**data, "kid": self.kid, "use": self.use, "alg": alg}


@dataclass
class FakeRealm:
    """State and behaviour of the fake realm; tests mutate it between requests."""

    keys: list[SigningKey]
    clients: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    jwks_uri: str | None = None
    calls: Counter[str] = field(default_factory=Counter)
    status: dict[str, int] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    jwks_body: Any = None
    inactive: set[str] = field(default_factory=set)
    token_lifetime: int = 300

    @property
    def issuer(self) -> str:
        """The realm's issuer URL."""
        return f"{self.base_url}/realms/{REALM}"

    def mint(
        self,
        overrides: dict[str, Any] | None = None,
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        lifetime: int | None = None,
    ) -> str:
        """A signed access token for alice (claims overridable; None values are removed)."""
        signer = key or self.keys[0]
        now = int(time.time())
        claims: dict[str, Any] = {
            "exp": now + (self.token_lifetime if lifetime is None else lifetime),
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": self.issuer,
            "aud": "account",
            "sub": "0b1e-alice",
            "typ": "Bearer",
            "azp": "grafana",
            "preferred_username": "alice",
        }
        claims.update(overrides or {})
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, signer.private, "RS256", headers={"kid": signer.kid, **(headers or {})})

    def service_token(self, client_id: str) -> str:
        """A client-credentials token as Keycloak mints it for `client_id`."""
        return self.mint(
            {
                "azp": client_id,
                "client_id": client_id,
                "preferred_username": f"service-account-{client_id}",
                "sub": f"sa-{client_id}",
            }
        )

    async def _gate(self, name: str) -> web.Response | None:
        """Count the call, wait if told, and answer a forced status if one is set."""
        self.calls[name] += 1
        if self.delay.get(name):
            await asyncio.sleep(self.delay[name])
        if name in self.status:
            return web.json_response({"error": "server_error"}, status=self.status[name])
        return None

    async def discovery(self, request: web.Request) -> web.Response:
        """OIDC discovery."""
        forced = await self._gate("discovery")
        if forced is not None:
            return forced
        oidc = f"{self.issuer}/protocol/openid-connect"
        return web.json_response(
            {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri or f"{oidc}/certs",
                "token_endpoint": f"{oidc}/token",
                "introspection_endpoint": f"{oidc}/token/introspect",
            }
        )

    async def certs(self, request: web.Request) -> web.Response:
        """The JWKS (or a scripted body)."""
        forced = await self._gate("jwks")
        if forced is not None:
            return forced
        if self.jwks_body is not None:
            return web.json_response(self.jwks_body)
        return web.json_response({"keys": [k.jwk() for k in self.keys]})

    async def token(self, request: web.Request) -> web.Response:
        """The client-credentials grant with client_secret_post."""
        forced = await self._gate("token")
        if forced is not None:
            return forced
        form = await request.post()
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if self.clients.get(client_id) != secret or not secret:
            return web.json_response(
                {
                    "error": "unauthorized_client",
                    "error_description": "Invalid client or Invalid client credentials",
                },
                status=401,
            )
        token = self.service_token(client_id)
        return web.json_response(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    async def introspect(self, request: web.Request) -> web.Response:
        """Introspection, authenticated by the proxy's client credentials."""
        forced = await self._gate("introspect")
        if forced is not None:
            return forced
        form = await request.post()
        if self.clients.get(str(form.get("client_id"))) != form.get("client_secret"):
            return web.json_response({"error": "invalid_request"}, status=401)
        active = str(form.get("token")) not in self.inactive
        return web.json_response({"active": True, "token_type": "Bearer"} if active else {"active": False})

    def app(self) -> web.Application:
        """The aiohttp application serving the realm."""
        app = web.Application()
        oidc = f"/realms/{REALM}/protocol/openid-connect"
        app.router.add_get(f"/realms/{REALM}/.well-known/openid-configuration", self.discovery)
        app.router.add_get(f"{oidc}/certs", self.certs)
        app.router.add_post(f"{oidc}/token", self.token)
        app.router.add_post(f"{oidc}/token/introspect", self.introspect)
        return app
