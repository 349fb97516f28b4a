"""structlog set-up: one JSON (or console) line per event, with secrets redacted.

Every line, the stdlib's (aiohttp's) included, goes through the same processors and ends in one
sink; tests can tap that sink (`add_tap`) to check that no token material is ever written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from proxy import context

REDACTED = "[redacted]"
# Token-shaped text: JWTs, `Bearer …`/`Basic …` values, `authorization: …`/`cookie: …` header
# dumps, and secret-named form or query parameters (`client_secret=…`).
_TOKEN_TEXT = re.compile(
    r"(?P<jwt>eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
    r"|(?i:\b(?P<scheme>bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|(?i:\b(?P<header>authorization|proxy-authorization|cookie|set-cookie|x-id-token)"
    r"(?P<sep>\"?\s*[:=]\s*\"?))[^\"\r\n]+"
    r"|(?i:\b(?P<param>client_secret|password|access_token|refresh_token|id_token|token|assertion)=)"
    r"[^&\s\"']+"
)
SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "secret",
        "password",
        "x-id-token",
        "prometheus_token",
        "auth_client_secret",
    }
)
_secrets: re.Pattern[str] | None = None
_secret_values: set[str] = set()


def _replace(match: re.Match[str]) -> str:
    """The redacted form of one token-shaped match (keeps the scheme/name for context)."""
    if match.group("jwt"):
        return REDACTED
    if match.group("scheme"):
        return f"{match.group('scheme')} {REDACTED}"
    if match.group("header"):
        return f"{match.group('header')}{match.group('sep')}{REDACTED}"
    return f"{match.group('param')}={REDACTED}"


def register_secrets(values: Iterable[str | None]) -> None:
    """Redact these exact strings (the configured client secret, upstream token) wherever they appear."""
    global _secrets
    _secret_values.update(v for v in values if v and len(v) >= 4)
    ordered = sorted(_secret_values, key=len, reverse=True)
    _secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None


def redact_text(text: str) -> str:
    """Replace token-shaped substrings (and registered secrets) with a marker."""
    out = text
    # Every token shape needs one of these; most field values (names, ids) have none.
    if " " in out or "=" in out or ":" in out or "eyJ" in out or "\t" in out:
        out = _TOKEN_TEXT.sub(_replace, out)
    if _secrets is not None:
        out = _secrets.sub(REDACTED, out)
    return out


def _redact_value(value: Any) -> Any:
    """Redact a field value: strings, and the strings inside dicts, lists and tuples."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SECRET_KEYS else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        # Lists of names (clusters, namespaces) are the common case: strings straight to the scan.
        return [redact_text(v) if v.__class__ is str else _redact_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_text(str(value))


# Fields whose values the proxy makes itself (route names, enums, numbers, its own ids): never
# caller-controlled, so not scanned. Subjects, reach and messages are scanned like anything else.
_OWN_FIELDS = frozenset(
    {
        "level",
        "timestamp",
        "method",
        "route",
        "status",
        "decision",
        "duration_ms",
        "authn_ms",
        "authz_ms",
        "upstream_ms",
        "keycloak_ms",
        "cache_hit",
        "worker",
        "trace_id",
        "hub",
    }
)


# Per field name: skipped (the proxy's own), always replaced (secret-named) or scanned.
_SKIP, _SECRET, _SCAN = 1, 2, 3
# Values that carry no text: left as they are (as before, whatever their field's name).
_SCALAR_TYPES = frozenset({int, float, bool, type(None)})


def _kind(key: str) -> int:
    """How the values of field `key` are redacted."""
    return _SKIP if key in _OWN_FIELDS else _SECRET if key.lower() in SECRET_KEYS else _SCAN


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop secret-named fields and token-shaped strings."""
    for key, value in event.items():
        kind = _kind(key)
        if kind == _SKIP or value.__class__ in _SCALAR_TYPES:
            continue
        if kind == _SECRET:
            event[key] = REDACTED
        elif value.__class__ is str:
            event[key] = redact_text(value)
        else:
            event[key] = _redact_value(value)
    return event


def request_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every line written while a request is handled carries its id and,
    once authenticated, its subject (from the request context)."""
    ctx = context.current()
    if ctx is not None:
        event.setdefault("request_id", ctx.request_id)
        if ctx.subject is not None:
            event.setdefault("subject", ctx.subject)
    return event


Tap = Callable[[str], None]


class _Sink:
    """Where every rendered line goes: the output stream, plus any taps (tests)."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.taps: list[Tap] = []

    def write(self, text: str) -> int:
        """Write rendered text and hand it to the taps."""
        for tap in self.taps:
            tap(text)
        return self.stream.write(text)

    def flush(self) -> None:
        """Flush the output stream."""
        self.stream.flush()


SINK = _Sink()
# Whether per-request lines are written at all; the middleware skips building them otherwise.
request_lines_enabled = True


def add_tap(tap: Tap) -> Callable[[], None]:
    """Call `tap` with every rendered log line from now on; returns the function that removes it."""
    SINK.taps.append(tap)
    return lambda: SINK.taps.remove(tap)


def configure(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Configure structlog and route stdlib logging (aiohttp's included) through it."""
    global request_lines_enabled
    numeric = logging.getLevelName(level.upper())
    request_lines_enabled = numeric <= logging.INFO
    SINK.stream = stream if stream is not None else sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        request_fields,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(SINK),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(SINK)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access log is replaced by the proxy's own request line (runners use
    # access_log=None); should a runner enable it anyway, its lines stay quiet below warning.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
