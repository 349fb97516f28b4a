"""Guard limits on a PromQL text, with defaults measured against the parser (see the audit)."""

from __future__ import annotations

from dataclasses import dataclass

# Defaults: real dashboards and Prometheus' own test corpus peak at 1482 bytes, nesting 7,
# 13 operators and ~600 us of regex compilation; promql-parser stays under ~30 ms and ~50 MB for
# the worst inputs these limits admit (tests/security/test_promql_guard_limits.py).
DEFAULT_MAX_BYTES = 12 * 1024
DEFAULT_MAX_DEPTH = 24
DEFAULT_MAX_OPERATORS = 48
DEFAULT_MAX_REGEX_COST = 12_000
# Bound on forwarded (rewritten) text, so that its verifying re-parse stays within the event-loop
# budget; PROXY_MAX_REWRITE_BYTES.
DEFAULT_MAX_REWRITE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Pre-parse limits: UTF-8 bytes, bracket depth, operator tokens, regex compile cost (~us)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_operators: int = DEFAULT_MAX_OPERATORS
    max_regex_cost: int = DEFAULT_MAX_REGEX_COST
    max_rewrite_bytes: int = DEFAULT_MAX_REWRITE_BYTES

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_operators", "max_regex_cost", "max_rewrite_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
