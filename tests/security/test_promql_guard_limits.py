"""The guard keeps promql-parser bounded: worst cases at the limits parse in < 50 ms / < 200 MB,
and inputs that crash or explode the raw parser are refused before it sees them.

Every probe runs in a child process with RLIMIT_AS set, so a crash cannot take the tests down.
Times are CPU time (user + system) of the work itself, the minimum of a few repetitions: CI runs
the suite with `pytest -n 2` on two cores, where wall-clock time measures the neighbours' load.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.promql import Limits, QueryLimitError, QuerySyntaxError
from proxy.promql.guard import check

PROBE = Path(__file__).resolve().parents[1] / "unit" / "promql" / "promql_probe.py"
LIMITS = Limits()
CAP = 1 << 30  # address-space cap of each child
MAX_SECONDS = 0.050
MAX_RSS_KIB = 200 * 1024
REPS = 5  # cold parses per probe; the fastest counts


def _fill(sep: str, terms: int) -> str:
    per = (LIMITS.max_bytes - 64) // terms - len(sep)
    return sep.join("m{" + "a" * (per - 8) + '="x"}' for _ in range(terms))


WORST = {
    "plus_chain_48_ops_full_bytes": _fill(" + ", LIMITS.max_operators + 1),
    "or_chain_48_ops_full_bytes": _fill(" or ", LIMITS.max_operators + 1),
    "parens_depth_24_with_48_ops": "(" * 24 + " + ".join(["m"] * 49) + ")" * 24,
    "calls_depth_23": "abs(" * 23 + " - ".join(['up{job="a"}'] * 49) + ")" * 23,
    "subqueries_depth_24": "max_over_time(" * 12 + "up" + "[5m:1m])" * 12,
    "unary_chain_48": "-" * 48 + "up",
    "flat_matchers_full_bytes": "up{" + ",".join(f'l{i}="v"' for i in range(1300)) + "}",
    "regex_unicode_class_budget": 'up{a=~"\\\\w{26}"}',
    "regex_counted_dots_budget": 'up{a=~"(.{30}){40}"}',
    "regex_many_unicode_budget": "up{" + ",".join(f'a{i}=~"\\\\pL"' for i in range(25)) + "}",
    "combined_depth_ops_regex": "(" * 22
    + " or ".join(['up{a=~"\\\\w"}'] * 24 + ["m{" + "a" * 300 + '="x"}'] * 24)
    + ")" * 22,
}
# Inputs the raw parser crashes on or blows up with (audit): the guard must refuse each.
EXPLOSIVE = {
    "parens_9000": "(" * 9000 + "up" + ")" * 9000,
    "plus_chain_5000": " + ".join(["up"] * 5000),
    "subqueries_3000": "max_over_time(" * 3000 + "up" + "[5m:])" * 3000,
    "calls_6000": "abs(" * 6000 + "up" + ")" * 6000,
    "or_chain_100kb": " or ".join(['up{job="job000123",instance=~"host-123.*"}'] * 2200),
    "regex_w200_x50": "up{" + ",".join(f'a{i}=~"\\\\w{{200}}"' for i in range(50)) + "}",
    "regex_dots_x100": "up{" + ",".join(f'a{i}=~"(.{{100}}){{100}}"' for i in range(100)) + "}",
    "regex_w400": 'up{a=~"\\\\w{400}"}',
}


def _probe(query: str, *, raw: bool = False, cap: int = CAP, reps: int = REPS) -> dict[str, object]:
    args = [sys.executable, str(PROBE), str(cap), "raw" if raw else "guarded", str(reps)]
    done = subprocess.run(args, input=query, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return {"outcome": f"died:{done.returncode}", "seconds": None, "rss_kib": None}
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("name", sorted(WORST))
def test_worst_case_at_limits_is_admitted_and_cheap(name: str) -> None:
    """Each worst-case family at the limits passes the guard and parses in < 50 ms, < 200 MB."""
    query = WORST[name]
    check(query, LIMITS)
    report = _probe(query)
    assert report["outcome"] == "parsed", report
    assert isinstance(report["seconds"], float) and report["seconds"] < MAX_SECONDS, report
    assert isinstance(report["rss_kib"], int) and report["rss_kib"] < MAX_RSS_KIB, report


@pytest.mark.parametrize("name", sorted(EXPLOSIVE))
def test_explosive_inputs_are_refused_by_the_guard_quickly(name: str) -> None:
    """Inputs that crash or explode the raw parser never reach it: refused in well under 1 ms."""
    query = EXPLOSIVE[name]
    best = float("inf")
    for _ in range(REPS):
        start = time.process_time()
        with pytest.raises(QueryLimitError) as info:
            check(query, LIMITS)
        best = min(best, time.process_time() - start)
    assert best < 0.001, best
    assert info.value.limit in str(info.value) and str(info.value.maximum) in str(info.value)


@pytest.mark.parametrize("name", ["plus_chain_5000", "regex_w200_x50"])
def test_raw_parser_really_explodes_on_them(name: str) -> None:
    """Control: the same inputs given raw to promql-parser die or blow the time/memory budget."""
    report = _probe(EXPLOSIVE[name], raw=True, cap=256 << 20, reps=1)
    seconds = report["seconds"]
    exploded = str(report["outcome"]).startswith(("died", "error")) or (
        isinstance(seconds, float) and seconds > MAX_SECONDS
    )
    assert exploded, report


_atom = st.sampled_from(
    ['up{a=~"\\\\w"}', 'm{job="x"}', "rate(x[5m])", "abs(x)", "x", "1", 'z{b=~"(.{9}){9}"}']
)


def _grow(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from([" + ", " or ", " / ", " and "]), children).map("".join),
        children.map(lambda c: f"({c})"),
        children.map(lambda c: f"sum by (a) ({c})"),
        children.map(lambda c: f"max_over_time(({c})[5m:1m])"),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.recursive(_atom, _grow, max_leaves=120))
def test_generated_inputs_within_limits_stay_cheap(query: str) -> None:
    """Hypothesis inputs near the limits: admitted ones parse in < 50 ms and < 200 MB."""
    try:
        check(query, LIMITS)
    except (QueryLimitError, QuerySyntaxError):
        return
    report = _probe(query)
    # type errors (e.g. an aggregation over a scalar) are refused by the parser: still cheap
    assert report["outcome"] in ("parsed", "QuerySyntaxError"), report
    assert isinstance(report["seconds"], float) and report["seconds"] < MAX_SECONDS, report
    assert isinstance(report["rss_kib"], int) and report["rss_kib"] < MAX_RSS_KIB, report
