"""The shared results-cache stores: memcached (aiomcache) and Redis (redis.asyncio).

Authentication (docs/caching.md#backends):
- memcached: TLS with a client certificate that memcached verifies (`memcached -Z -o
  ssl_verify_mode=2,ssl_ca_cert=…`) is the authentication: memcached's own SASL works only on
  its binary protocol, which aiomcache (text protocol) does not speak.
- Redis: ACL user name and password (`cache_username`, `cache_password`, the password re-read
  from its `_FILE` when it changes), over TLS with an optional client certificate.

The CA bundle and client certificate are re-read when they change on disk (checked at most every
`cert_reload_interval`, like the upstream's): new connections use the new files.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

import aiomcache
import structlog
from aiomcache.pool import Connection, MemcachePool
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection as RedisConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider

from proxy.filewatch import FileWatch
from proxy.results.sealed import SharedBackend, TooLarge
from proxy.settings_sources import split_host_port

if TYPE_CHECKING:
    from collections.abc import Mapping

    from proxy.config import Settings
    from proxy.filewatch import Secret

log = structlog.get_logger(__name__)

# Connections per worker process to the shared store; more requests wait (within cache_timeout).
POOL_SIZE = 16
# Largest sealed value sent at all (memcached refuses items over its `-I`, 1 MiB by default: that
# refusal is counted `too_large` too; Redis keeps values up to 512 MiB).
MAX_VALUE = 64 << 20
TOO_LARGE = "SERVER_ERROR object too large"


class TLSFiles:
    """The shared cache's client TLS context, its files re-read when they change on disk."""

    def __init__(self, settings: Settings) -> None:
        """Load the CA bundle and the client certificate now (checked at start by `load_settings`)."""
        self._ca = settings.cache_ca_cert
        self._pair = (settings.cache_tls_cert, settings.cache_tls_key)
        self.ctx = ssl.create_default_context(cafile=str(self._ca) if self._ca else None)
        self._load_pair()
        self._watch = FileWatch((self._ca, *self._pair), settings.cert_reload_interval)

    def _load_pair(self) -> None:
        """Load the client certificate and key into the context, when configured."""
        cert, key = self._pair
        if cert is not None and key is not None:
            self.ctx.load_cert_chain(str(cert), str(key))

    def refresh(self) -> None:
        """Reload changed files into the context (new handshakes use them); keep it on failure."""
        stamp = self._watch.changed()
        if stamp is None:
            return
        try:
            if self._ca is not None:
                # Adds the new bundle's CAs: the old ones stay trusted until the next restart.
                self.ctx.load_verify_locations(cafile=str(self._ca))
            self._load_pair()
        except (OSError, ssl.SSLError) as exc:
            log.error("results_cache_tls_reload_failed", error=str(exc))
            return
        self._watch.accept(stamp)
        log.info("results_cache_tls_reloaded")


def tls_files(settings: Settings) -> TLSFiles | None:
    """The shared cache's TLS files, or None without `cache_tls`."""
    return TLSFiles(settings) if settings.cache_tls else None


class _Pool(MemcachePool):
    """aiomcache's pool, except that a connection left by a cancelled call is closed.

    aiomcache returns a connection to its pool when a call is cancelled mid-reply (a timeout);
    the next call on it would read the stale reply. Closing it keeps replies in step."""

    def release(self, conn: Connection) -> None:
        """Return `conn`, or close it when the releasing task is being cancelled."""
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            conn.reader.set_exception(ConnectionAbortedError("call cancelled"))
        super().release(conn)


class MemcachedStore:
    """Raw get/set on memcached over aiomcache (text protocol), TLS when configured."""

    def __init__(self, host: str, port: int, tls: TLSFiles | None, server_name: str | None) -> None:
        """A lazily connecting pool to `host:port`."""
        conn_args: Mapping[str, Any] | None = None
        if tls is not None:
            conn_args = {"ssl": tls.ctx, "server_hostname": server_name or host}
        self._tls = tls
        self._client = aiomcache.Client(host, port, pool_size=POOL_SIZE, pool_minsize=1)
        self._client._pool = _Pool(host, port, minsize=1, maxsize=POOL_SIZE, conn_args=conn_args)

    async def get(self, key: bytes) -> bytes | None:
        """The value stored under `key`, or None."""
        if self._tls is not None:
            self._tls.refresh()
        value: bytes | None = await self._client.get(key)
        return value

    async def set(self, key: bytes, value: bytes, ttl: int) -> None:
        """Store `value` under `key` for `ttl` seconds; TooLarge when memcached refuses its size."""
        if self._tls is not None:
            self._tls.refresh()
        try:
            await self._client.set(key, value, exptime=ttl)
        except aiomcache.exceptions.ClientException as exc:
            if TOO_LARGE in str(exc):  # aiomcache keeps the server's reply only in its message
                raise TooLarge from exc
            raise

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._client.close()


class _SecretCredentials(CredentialProvider):
    """The Redis user name and the password's current value (re-read from its file on change)."""

    def __init__(self, username: str | None, password: Secret) -> None:
        """Credentials for AUTH on every new connection."""
        self._username = username
        self._password = password

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        """(password,) or (user name, password)."""
        password = self._password.get() or ""
        return (self._username, password) if self._username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        """As `get_credentials` (reading the secret does not block: it is a small local file)."""
        return self.get_credentials()


class _TLSConnection(RedisConnection):
    """A Redis connection over our TLS context, verifying `server_name` (redis-py verifies the host)."""

    def __init__(self, *, tls: ssl.SSLContext, server_name: str, **kwargs: Any) -> None:
        """As redis-py's Connection, with TLS."""
        self._tls = tls
        self._server_name = server_name
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        """The plain connection's arguments plus TLS and the name to verify."""
        return {**super()._connection_arguments(), "ssl": self._tls, "server_hostname": self._server_name}


class RedisStore:
    """Raw get/set on Redis over redis.asyncio, a bounded pool, no retries (the caller times out)."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: TLSFiles | None,
        server_name: str | None,
        credentials: CredentialProvider | None,
        timeout: float,
    ) -> None:
        """A lazily connecting pool to `host:port`."""
        extra: dict[str, Any] = {}
        self._tls = tls
        if tls is not None:
            extra = {"connection_class": _TLSConnection, "tls": tls.ctx, "server_name": server_name or host}
        pool = BlockingConnectionPool(
            host=host,
            port=port,
            credential_provider=credentials,
            max_connections=POOL_SIZE,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            **extra,
        )
        self._client = Redis(connection_pool=pool)

    async def get(self, key: bytes) -> bytes | None:
        """The value stored under `key`, or None."""
        if self._tls is not None:
            self._tls.refresh()
        value = await self._client.get(key)
        return value if isinstance(value, bytes) else None  # no decode_responses: always bytes

    async def set(self, key: bytes, value: bytes, ttl: int) -> None:
        """Store `value` under `key` for `ttl` seconds."""
        if self._tls is not None:
            self._tls.refresh()
        await self._client.set(key, value, ex=ttl)

    async def close(self) -> None:
        """Close the pool's connections."""
        await self._client.aclose()


def shared_backend(settings: Settings) -> SharedBackend:
    """The memcached or Redis backend `settings` configure (validated by `load_settings`)."""
    host, port = split_host_port(settings.cache_address)
    secret = (settings.secret("cache_hmac_key").get() or "").encode()
    tls = tls_files(settings)
    server_name = settings.cache_tls_server_name
    timeout = settings.cache_timeout
    if settings.cache == "memcached":
        store: MemcachedStore | RedisStore = MemcachedStore(host, port, tls, server_name)
    else:
        credentials = None
        if settings.cache_password is not None:
            credentials = _SecretCredentials(settings.cache_username, settings.secret("cache_password"))
        store = RedisStore(host, port, tls, server_name, credentials, timeout)
    return SharedBackend(
        settings.cache, store, secret, ttl=settings.cache_ttl, timeout=timeout, max_value_bytes=MAX_VALUE
    )


__all__ = ["MemcachedStore", "RedisStore", "TLSFiles", "shared_backend", "tls_files"]
