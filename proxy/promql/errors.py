"""Typed errors of the PromQL engine; the HTTP layer maps them to statuses in one place."""

from __future__ import annotations


class PromQLError(Exception):
    """Base of every refusal raised by the PromQL engine."""


class QueryLimitError(PromQLError):
    """The guard refused the query before parsing: a limit was exceeded (400 bad_data)."""

    def __init__(self, limit: str, value: int, maximum: int) -> None:
        super().__init__(f"query exceeds the {limit} limit ({value} > {maximum})")
        self.limit = limit
        self.value = value
        self.maximum = maximum


class QuerySyntaxError(PromQLError):
    """The query is not valid PromQL, or uses a construct the proxy refuses (400 bad_data)."""


class AccessDenied(PromQLError):
    """A selector reaches clusters/namespaces the caller does not hold (403 forbidden)."""


class NarrowingImpossible(PromQLError):
    """Narrow mode cannot express the restriction faithfully; the message says what to add (400)."""


class VerificationFailed(PromQLError):
    """The rewritten query did not verify; it is never forwarded (500 internal)."""
