"""Agreement with prom-label-proxy's error_on_replace=true enforcement (its own test table)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest

from proxy.promql import (
    AccessDenied,
    Holdings,
    LabelModel,
    Limits,
    PromQLError,
    QuerySyntaxError,
    analyse_query,
    enforce_query,
)
from proxy.promql import nodes as n
from proxy.promql.parse import parse
from proxy.promql.printer import to_text
from proxy.promql.regex import literal_alternation
from proxy.promql.selectors import accepts, iter_selectors
from tests.unit.promql.corpus import DATA, load_jsonl

LIMITS = Limits()
CASES = [
    row
    for row in load_jsonl("prom-label-proxy-enforce-cases.jsonl")
    if row["kind"] == "promql_enforce" and "note" not in row
]
DEVIATIONS: dict[str, str] = {
    row["id"]: row["reason"]
    for row in json.loads((DATA / "prom-label-proxy-deviations.json").read_text(encoding="utf-8"))
}


def _lower(row: dict[str, Any]) -> dict[str, Any]:
    """Resource names are Kubernetes names: the table's value "NS" becomes "ns" everywhere."""
    text = json.dumps(row).replace('\\"NS\\"', '\\"ns\\"').replace('"NS"', '"ns"')
    lowered: dict[str, Any] = json.loads(text)
    return lowered


def _holdings(row: dict[str, Any]) -> Holdings | None:
    """The proxy holdings equivalent to the row's enforced values (None: no equivalent)."""
    values: list[str] = row["values"]
    if not row["regex_match"]:
        return Holdings(clusters=frozenset(values))
    names = literal_alternation(values[0])
    return None if names is None else Holdings(clusters=names)


def _selects(matchers: tuple[n.Matcher, ...], assignment: dict[str, str]) -> bool:
    for m in matchers:
        verdict = accepts(m, assignment.get(m.name, ""))
        if verdict is None:
            anchored = re.fullmatch(m.value, assignment.get(m.name, "")) is not None
            verdict = anchored == (m.op == "=~")
        if not verdict:
            return False
    return True


def _same_series(a: n.VectorSelector, b: n.VectorSelector) -> bool:
    """Both selectors select the same series over every assignment of the values they name."""
    if a.name != b.name or a.offset_ms != b.offset_ms or a.at != b.at:
        return False
    labels = sorted({m.name for m in a.matchers + b.matchers})
    values: dict[str, set[str]] = {label: {"", "zz-other"} for label in labels}
    for m in a.matchers + b.matchers:
        finite = {m.value} if m.op in ("=", "!=") else literal_alternation(m.value) or set()
        values[m.name] |= set(finite)
    for combo in itertools.product(*(sorted(values[label]) for label in labels)):
        assignment = dict(zip(labels, combo, strict=True))
        if _selects(a.matchers, assignment) != _selects(b.matchers, assignment):
            return False
    return True


def _without_matchers(e: n.Expr) -> str:
    # the table's label values contain no braces, so blanking {…} keeps only the structure
    return re.sub(r"\{[^}]*\}", "{}", to_text(e))


@pytest.mark.parametrize("row", CASES, ids=[str(r["id"]) for r in CASES])
def test_decision_and_series_agree_with_prom_label_proxy(row: dict[str, Any]) -> None:
    """Same forward/refuse decision as prom-label-proxy and, when forwarded, the same series."""
    if row["id"] in DEVIATIONS:
        pytest.skip(DEVIATIONS[row["id"]])
    row = _lower(row)
    holdings = _holdings(row)
    assert holdings is not None, "rows without an equivalent must be listed as deviations"
    model = LabelModel(cluster_label=row["label"], project_labels=())
    try:
        out = enforce_query(analyse_query(row["input_query"], LIMITS, model), holdings, "narrow")
    except QuerySyntaxError:
        assert row.get("expected_error") == "ErrQueryParse"
        return
    except AccessDenied:
        assert row.get("expected_error") == "ErrIllegalLabelMatcher"
        return
    except PromQLError as exc:  # pragma: no cover - reported with the row
        pytest.fail(f"unexpected {type(exc).__name__}: {exc}")
    assert "expected_query" in row, f"forwarded {out!r} where prom-label-proxy refuses"
    ours = parse(out, LIMITS)
    theirs = parse(row["expected_query"], LIMITS)
    assert _without_matchers(ours) == _without_matchers(theirs)
    pairs = zip(iter_selectors(ours), iter_selectors(theirs), strict=True)
    assert all(_same_series(a, b) for a, b in pairs), (out, row["expected_query"])


def test_deviations_name_existing_rows() -> None:
    """Every listed deviation refers to a row of the table."""
    assert set(DEVIATIONS) <= {str(r["id"]) for r in CASES}
