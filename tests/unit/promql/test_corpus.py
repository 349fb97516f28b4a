"""Prometheus' own test corpus through the whole engine: round trip, rewrite, refusals."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from proxy.promql import (
    Holdings,
    LabelModel,
    Limits,
    NarrowingImpossible,
    PromQLError,
    QueryLimitError,
    QuerySyntaxError,
    analyse_query,
    enforce_query,
)
from proxy.promql.guard import check
from proxy.promql.parse import parse
from proxy.promql.printer import to_text
from tests.unit.promql.corpus import (
    DATA,
    binding_dump,
    equal_matcher_dump,
    load_lines,
    regex_matcher_dump,
)

MODEL = LabelModel()
LIMITS = Limits()
TENANT = Holdings(clusters=frozenset({"c1"}))
TENANT_MATCHER = equal_matcher_dump("cluster", "c1")
# inside absent()/absent_over_time() the tenant matcher is spelled =~"c1" (not copied as a label)
TENANT_REGEX = regex_matcher_dump("cluster", "c1")
REFUSED_FILE = DATA / "corpus-refused.json"
VALID = load_lines("promql-valid.txt")


def _rewrite_all() -> tuple[dict[str, str], dict[str, str]]:
    forwarded: dict[str, str] = {}
    refused: dict[str, str] = {}
    for query in VALID:
        try:
            forwarded[query] = enforce_query(analyse_query(query, LIMITS, MODEL), TENANT, "narrow")
        except PromQLError as exc:
            refused[query] = f"{type(exc).__name__}: {exc}"
    return forwarded, refused


FORWARDED, REFUSED = _rewrite_all()


def test_corpus_rewrite_verifies_for_at_least_99_percent() -> None:
    """At least 99 % of the valid corpus is rewritten with a tenant matcher and verified."""
    assert len(FORWARDED) / len(VALID) >= 0.99, len(REFUSED)


def test_corpus_refusals_are_exactly_the_listed_ones() -> None:
    """The refused corpus queries and their reasons match tests/data (the set may not drift)."""
    listed = json.loads(REFUSED_FILE.read_text(encoding="utf-8"))
    assert {r["query"]: r["reason"] for r in listed} == REFUSED


def test_corpus_refusals_are_syntax_refusals() -> None:
    """Every refusal is a deliberate construct refusal, never a verification failure."""
    kinds = Counter(reason.split(":")[0] for reason in REFUSED.values())
    assert set(kinds) == {"QuerySyntaxError"}


def test_corpus_output_means_the_same_to_the_parser() -> None:
    """Zero forwarded queries differ from their original except by the tenant matcher.

    Compared on promql-parser's own Debug dump, independent of the project's converter (the
    original goes through the guard's respelling of raw strings the binding mis-lexes).
    """
    changed = [
        q
        for q, out in FORWARDED.items()
        if binding_dump(out, (TENANT_MATCHER, TENANT_REGEX))
        != binding_dump(check(q, LIMITS).text, (TENANT_MATCHER, TENANT_REGEX))
    ]
    assert changed == []


def test_corpus_every_selector_gets_the_tenant_matcher() -> None:
    """Every selector of every forwarded query carries cluster="c1"."""
    from proxy.promql.selectors import iter_selectors

    for out in FORWARDED.values():
        tree = parse(out, Limits(max_bytes=1 << 20, max_operators=1000, max_depth=100))
        for vs in iter_selectors(tree):
            assert any(m.name == "cluster" and m.value == "c1" for m in vs.matchers), out


def test_corpus_printer_round_trips() -> None:
    """The printer's text of every accepted corpus query parses back to an equal tree."""
    for query in FORWARDED:
        tree = parse(query, LIMITS)
        assert parse(to_text(tree), LIMITS) == tree, query


def test_corpus_narrowing_never_fails_verification() -> None:
    """Narrowing the corpus to project-level holdings forwards verified text or refuses cleanly."""
    holder = Holdings(clusters=frozenset({"c1"}), projects={"c2": frozenset({"team-a"})})
    outcomes: Counter[str] = Counter()
    for query in FORWARDED:
        try:
            enforce_query(analyse_query(query, LIMITS, MODEL), holder, "narrow")
            outcomes["forwarded"] += 1
        except NarrowingImpossible:
            outcomes["narrowing impossible"] += 1
    assert outcomes["forwarded"] > 0.8 * len(FORWARDED)


ACCEPTED_INVALID = {
    row["query"]: row["reason"]
    for row in json.loads((DATA / "invalid-corpus-accepted.json").read_text(encoding="utf-8"))
}
INVALID = load_lines("promql-invalid.txt")


@pytest.mark.parametrize("query", [q for q in INVALID if q not in ACCEPTED_INVALID])
def test_invalid_corpus_is_refused_as_syntax_or_limit(query: str) -> None:
    """Every query Prometheus rejects is refused as QuerySyntaxError/QueryLimitError, no crash."""
    with pytest.raises((QuerySyntaxError, QueryLimitError)):
        analyse_query(query, LIMITS, MODEL)


def test_invalid_corpus_deliberate_acceptances_are_prometheus3_valid() -> None:
    """Only the two entries Prometheus 3 accepts are forwarded, with an explicit unit added."""
    assert set(ACCEPTED_INVALID) <= set(INVALID)
    for query in ACCEPTED_INVALID:
        out = enforce_query(analyse_query(query, LIMITS, MODEL), TENANT, "narrow")
        assert "1s" in out
