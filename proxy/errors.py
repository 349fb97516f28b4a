"""Typed HTTP-facing errors and the one place that maps every error to Prometheus' envelope."""

from __future__ import annotations

import json
from typing import ClassVar

from proxy.promql import errors as promql_errors


class ProxyError(Exception):
    """An error answered to the client as `{"status":"error","errorType","error"}`."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ProxyError):
    """400: unparseable, missing or duplicate parameters, PromQL limits, narrowing guidance."""

    status = 400
    error_type = "bad_data"


class Unauthorized(ProxyError):
    """401: no usable credentials."""

    status = 401
    error_type = "unauthorized"


class Forbidden(ProxyError):
    """403: authenticated, but the caller does not hold what the request needs."""

    status = 403
    error_type = "forbidden"


class NotFound(ProxyError):
    """404: no such route (or, with several hubs, no default hub for an unprefixed path)."""

    status = 404
    error_type = "not_found"


class RequestTimeout(ProxyError):
    """408: the client did not send its request body in time."""

    status = 408
    error_type = "timeout"


class PayloadTooLarge(ProxyError):
    """413: request body or URL over its size limit."""

    status = 413
    error_type = "bad_data"


class UnsupportedMediaType(ProxyError):
    """415: a request body the proxy will not interpret."""

    status = 415
    error_type = "bad_data"


class TooManyRequests(ProxyError):
    """429: fair-use limits or Basic-auth failure rate limits."""

    status = 429
    error_type = "too_many_requests"


class UpstreamUnavailable(ProxyError):
    """502: the upstream is unreachable or refused the proxy's own credentials."""

    status = 502
    error_type = "unavailable"


class KeycloakUnavailable(ProxyError):
    """503: Keycloak is unreachable, slow, or answered something that cannot be trusted."""

    status = 503
    error_type = "unavailable"


class UpstreamTimeout(ProxyError):
    """504: the upstream did not answer within the configured timeout."""

    status = 504
    error_type = "timeout"


_PROMQL_MAP: dict[type[promql_errors.PromQLError], type[ProxyError]] = {
    promql_errors.QueryLimitError: BadRequest,
    promql_errors.QuerySyntaxError: BadRequest,
    promql_errors.NarrowingImpossible: BadRequest,
    promql_errors.AccessDenied: Forbidden,
}


def from_promql(exc: promql_errors.PromQLError) -> ProxyError:
    """Map a PromQL engine error to its HTTP error; anything unknown is a 500."""
    for kind, http_error in _PROMQL_MAP.items():
        if isinstance(exc, kind):
            return http_error(str(exc))
    return ProxyError("the rewritten query could not be verified; it was not forwarded")


def envelope(error_type: str, message: str) -> bytes:
    """Serialise Prometheus' error envelope."""
    return json.dumps({"status": "error", "errorType": error_type, "error": message}).encode()
