"""Start-up check of the configured TLS files: each must load, or it is a configuration problem.

A CA bundle without a certificate, a certificate that is not PEM or a key that does not match
would otherwise stop the proxy with an SSL traceback when the first context is built; here they
are listed with the other configuration problems (exit 2, docs/operations.md#configuration).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.hubs import HubConfig


def _reason(exc: Exception) -> str:
    """OpenSSL's short reason (`NO_CERTIFICATE_OR_CRL_FOUND`), or the OS error text."""
    if isinstance(exc, ssl.SSLError):
        # Python reports a file that is not PEM at all only as "PEM lib".
        reason = exc.reason if exc.reason and exc.reason != "PEM lib" else None
        return str(reason or "not PEM, or the key does not match")
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)


def _readable(path: Path) -> bool:
    """Unreadable files are reported by the option checks already; only readable ones are loaded."""
    return path.is_file() and os.access(path, os.R_OK)


def ca_problem(name: str, path: Path | None) -> str | None:
    """Why `path` cannot serve as a CA bundle, or None."""
    if path is None or not _readable(path):
        return None
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"{name}: {path} holds no usable CA certificate ({_reason(exc)})"
    return None


def pair_problem(name: str, cert: Path | None, key: Path | None) -> str | None:
    """Why `cert` and `key` cannot serve as a certificate and its key, or None."""
    if cert is None or key is None or not (_readable(cert) and _readable(key)):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # A password (ignored for a plain key) stops OpenSSL prompting on a terminal.
        ctx.load_cert_chain(str(cert), str(key), password=b"")
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"{name}: {cert} with key {key} cannot be loaded ({_reason(exc)})"
    return None


def _path(raw: Mapping[str, Any], name: str) -> Path | None:
    """A raw option value as a path (None when unset)."""
    value = raw.get(name)
    return Path(str(value)) if value not in (None, "") else None


def tls_problems(raw: Mapping[str, Any], hubs: Sequence[HubConfig]) -> list[str]:
    """Every configured CA bundle, certificate and key that does not load, one line each.

    `raw` holds a load's top-level values by field name, so the files are checked even when
    other options are invalid, and all problems are reported together."""
    found = [
        pair_problem("PROXY_TLS_CERT", _path(raw, "tls_cert"), _path(raw, "tls_key")),
        ca_problem("PROXY_AUTH_CA_CERT", _path(raw, "auth_ca_cert")),
        ca_problem("PROXY_PROMETHEUS_CA_CERT", _path(raw, "prometheus_ca_cert")),
        pair_problem(
            "PROXY_PROMETHEUS_TLS_CERT", _path(raw, "prometheus_tls_cert"), _path(raw, "prometheus_tls_key")
        ),
        ca_problem("PROXY_CACHE_CA_CERT", _path(raw, "cache_ca_cert")),
        pair_problem("PROXY_CACHE_TLS_CERT", _path(raw, "cache_tls_cert"), _path(raw, "cache_tls_key")),
    ]
    for i, hub in enumerate(hubs):
        where = f"hubs[{i}] ({hub.name})"
        found.append(ca_problem(f"{where}.prometheus_ca_cert", hub.prometheus_ca_cert))
        found.append(
            pair_problem(f"{where}.prometheus_tls_cert", hub.prometheus_tls_cert, hub.prometheus_tls_key)
        )
    return [problem for problem in found if problem]


__all__ = ["ca_problem", "pair_problem", "tls_problems"]
