"""Keycloak's back channel: endpoint URLs, the one session, calls mapped to typed errors.

Every call goes through `call()`, so latency, errors and the up/down gauge are recorded in one
place and every transport failure becomes `KeycloakUnavailable`; every answer the proxy cannot
trust becomes one through `unexpected()`. `KeycloakClient` (proxy/keycloak_client.py) is the one
object the rest of the proxy uses.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog

from proxy import context, tracing
from proxy.config import Settings
from proxy.errors import KeycloakUnavailable
from proxy.metrics import KEYCLOAK_ERRORS, KEYCLOAK_SECONDS, KEYCLOAK_UP

log = structlog.get_logger(__name__)

# Holdings answers list every granted resource; a realm with thousands of projects stays far
# below this, while a misbehaving server cannot make the proxy buffer without bound.
MAX_BODY_BYTES = 8 * 1024 * 1024
_CHUNK = 64 * 1024

Form = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Endpoints:
    """Back-channel URLs of one realm, all derived from `auth_base_url` and `auth_realm`."""

    realm_url: str
    discovery: str
    token: str
    introspect: str
    certs: str
    resource_set: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Endpoints:
        """Build the realm's URLs; Keycloak's paths are fixed, only base and realm vary."""
        realm = f"{settings.auth_base_url}/realms/{settings.auth_realm}"
        oidc = f"{realm}/protocol/openid-connect"
        return cls(
            realm_url=realm,
            discovery=f"{realm}/.well-known/openid-configuration",
            token=f"{oidc}/token",
            introspect=f"{oidc}/token/introspect",
            certs=f"{oidc}/certs",
            resource_set=f"{realm}/authz/protection/resource_set",
        )


@dataclass(frozen=True)
class Reply:
    """A Keycloak answer: status and the parsed JSON body (None when absent or not JSON)."""

    status: int
    body: Any

    @property
    def error(self) -> str | None:
        """Keycloak's OAuth `error` code, when the body carries one."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return str(self.body["error"])
        return None

    @property
    def description(self) -> str | None:
        """Keycloak's `error_description` (cut to 200 characters: it ends up in logs)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error_description"), str):
            return str(self.body["error_description"])[:200]
        return None


def challenge(realm: str) -> dict[str, str]:
    """The `WWW-Authenticate` header of every 401 (Bearer, never Basic: no browser pop-up)."""
    safe = realm.replace("\\", "").replace('"', "")
    return {"WWW-Authenticate": f'Bearer realm="{safe}"'}


def ssl_context(settings: Settings) -> ssl.SSLContext | bool:
    """TLS settings for Keycloak: the system or configured CA, or no verification if told so."""
    if not settings.auth_tls_verify:
        return False
    cafile = str(settings.auth_ca_cert) if settings.auth_ca_cert else None
    return ssl.create_default_context(cafile=cafile)


def create_session(settings: Settings) -> aiohttp.ClientSession:
    """The one session for every Keycloak call; must be created inside the running loop."""
    connector = aiohttp.TCPConnector(ssl=ssl_context(settings), limit=100, ttl_dns_cache=60)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=settings.auth_timeout),
        # Keycloak sets cookies on token answers; a shared jar would mix callers' sessions.
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        headers={"Accept": "application/json"},
        trace_configs=tracing.client_trace_configs("keycloak"),
    )


def same_origin(url: str, base: str) -> bool:
    """True when `url` has the scheme, host and port of `base`."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


async def call(
    session: aiohttp.ClientSession,
    name: str,
    method: str,
    url: str,
    *,
    time_limit: float,
    data: Form | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """Make one Keycloak call; transport failures and timeouts raise `KeycloakUnavailable`."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(time_limit):
            async with session.request(
                method,
                url,
                data=list(data) if data is not None else None,
                params=params,
                headers=headers,
                # A redirect would carry a bearer token or secret to an address nobody configured.
                allow_redirects=False,
            ) as response:
                raw = await _read_limited(response, name)
                status = response.status
    except TimeoutError:
        raise _failed(name, "timeout", f"Keycloak did not answer ({name}) within {time_limit:g}s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise _failed(name, "unreachable", f"Keycloak unreachable ({name}): {type(exc).__name__}") from exc
    finally:
        elapsed = time.perf_counter() - started
        KEYCLOAK_SECONDS.labels(name).observe(elapsed)
        context.add_time("keycloak", elapsed)
    KEYCLOAK_UP.set(1)
    return Reply(status, _parse_json(raw))


async def _read_limited(response: aiohttp.ClientResponse, name: str) -> bytes:
    """Read the body, refusing anything over MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _failed(name, "oversized", f"Keycloak answer too large ({name})")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes) -> Any:
    """Parsed JSON, or None for an empty or non-JSON body."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _failed(name: str, reason: str, message: str) -> KeycloakUnavailable:
    """Count a failed call and build the error that reports it."""
    KEYCLOAK_ERRORS.labels(name, reason).inc()
    if reason in ("timeout", "unreachable"):
        KEYCLOAK_UP.set(0)
    log.warning("keycloak_call_failed", call=name, reason=reason)
    return KeycloakUnavailable(message)


def unexpected(name: str, reply: Reply) -> KeycloakUnavailable:
    """The error for an answer the proxy cannot trust (5xx, unexpected 4xx, malformed body)."""
    if reply.status >= 500:
        reason = "status_5xx"
    elif reply.status >= 400:
        reason = "status_4xx"
    else:
        reason = "bad_answer"
    KEYCLOAK_ERRORS.labels(name, reason).inc()
    # Keycloak's own words: regressions such as keycloak#50827/#51250 are recognisable by them.
    log.warning(
        "keycloak_unexpected_answer",
        call=name,
        status=reply.status,
        error=reply.error,
        error_description=reply.description,
    )
    detail = f" ({reply.error})" if reply.error else ""
    return KeycloakUnavailable(f"Keycloak answered {reply.status}{detail} to {name}")
