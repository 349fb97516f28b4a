"""Start-up checks of the results-cache options (docs/operations.md#options, docs/caching.md).

A shared backend without its address or HMAC key cannot work safely, so it is a configuration
problem (exit 2), not a cache that silently misses; options that would be ignored are problems
too, so that an operator never believes a protection is on when it is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.settings_sources import split_host_port

if TYPE_CHECKING:
    from proxy.config import Settings

# HMAC-SHA256 keys shorter than the hash add no strength; shorter ones are likely typos.
MIN_HMAC_KEY_BYTES = 32
SHARED = ("memcached", "redis")


def cache_problems(settings: Settings) -> list[str]:
    """Why the results-cache options cannot work as given, one line each."""
    found: list[str] = []
    shared = settings.cache in SHARED
    if shared:
        if not settings.cache_address:
            found.append(f"PROXY_CACHE_ADDRESS: required with PROXY_CACHE={settings.cache}, not set")
        else:
            try:
                split_host_port(settings.cache_address)
            except ValueError as exc:
                found.append(f"PROXY_CACHE_ADDRESS: {exc}")
        key = settings.cache_hmac_key
        if not key:
            found.append(f"PROXY_CACHE_HMAC_KEY: required with PROXY_CACHE={settings.cache}, not set")
        elif (size := len(key.encode())) < MIN_HMAC_KEY_BYTES:
            found.append(f"PROXY_CACHE_HMAC_KEY: at least {MIN_HMAC_KEY_BYTES} bytes, got {size}")
    if settings.cache == "memcached" and (settings.cache_username or settings.cache_password):
        found.append(
            "PROXY_CACHE_USERNAME/PROXY_CACHE_PASSWORD: memcached authenticates clients by TLS client"
            " certificate here (PROXY_CACHE_TLS_CERT), not by password"
        )
    tls_files = [
        name
        for name, value in (
            ("PROXY_CACHE_CA_CERT", settings.cache_ca_cert),
            ("PROXY_CACHE_TLS_CERT", settings.cache_tls_cert),
            ("PROXY_CACHE_TLS_SERVER_NAME", settings.cache_tls_server_name),
        )
        if value
    ]
    if tls_files and not (shared and settings.cache_tls):
        found.append(f"{', '.join(tls_files)}: only used with PROXY_CACHE_TLS=true and a shared backend")
    return found


def cache_warnings(settings: Settings) -> list[str]:
    """What an operator should hear about a valid but weakly protected shared cache."""
    if settings.cache == "memcached" and not settings.cache_tls_cert:
        return [
            "PROXY_CACHE=memcached without a client certificate: anyone who reaches memcached can fill"
            " or empty the cache (entries stay encrypted and forged ones are refused)"
        ]
    if settings.cache == "redis" and not (settings.cache_password or settings.cache_tls_cert):
        return [
            "PROXY_CACHE=redis without a password or client certificate: anyone who reaches Redis can"
            " fill or empty the cache (entries stay encrypted and forged ones are refused)"
        ]
    return []


__all__ = ["MIN_HMAC_KEY_BYTES", "cache_problems", "cache_warnings"]
