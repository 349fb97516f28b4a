"""The PromQL security core: guard, parse, analyse, rewrite, print and verify (pure, no I/O).

Call `analyse_query`/`analyse_selectors` first, ask Keycloak about `Analysis.reach()`, then
`enforce_query`/`enforce_selectors` with the resulting `Holdings`.
"""

from proxy.promql.analyse import Analysis, Reach, analyse_query, analyse_selectors
from proxy.promql.enforce import (
    Endpoint,
    Forward,
    enforce_query,
    enforce_selectors,
    plan_query,
    plan_selectors,
)
from proxy.promql.errors import (
    AccessDenied,
    NarrowingImpossible,
    PromQLError,
    QueryLimitError,
    QuerySyntaxError,
    VerificationFailed,
)
from proxy.promql.limits import Limits
from proxy.promql.policy import Mode
from proxy.promql.scope import Holdings, LabelModel

__all__ = [
    "AccessDenied",
    "Analysis",
    "Endpoint",
    "Forward",
    "Holdings",
    "LabelModel",
    "Limits",
    "Mode",
    "NarrowingImpossible",
    "PromQLError",
    "QueryLimitError",
    "QuerySyntaxError",
    "Reach",
    "VerificationFailed",
    "analyse_query",
    "analyse_selectors",
    "enforce_query",
    "enforce_selectors",
    "plan_query",
    "plan_selectors",
]
