"""The fan-out merger and the warnings splicer (docs/authorization.md): pure parts, no network."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import errors
from proxy.fanout import MAX_CONCURRENT_BRANCHES, BranchAnswer, merge, pinned_time, run_branches
from proxy.splice import WarningSplicer, splice_all


def matrix(
    *series: tuple[dict[str, str], list[list[object]]], warnings: list[str] | None = None
) -> BranchAnswer:
    """A Prometheus matrix answer as upstream encodes it."""
    doc: dict[str, object] = {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": m, "values": v} for m, v in series]},
    }
    if warnings:
        doc["warnings"] = warnings
    return BranchAnswer(200, "application/json", json.dumps(doc, separators=(",", ":")).encode())


def test_merge_unions_by_full_label_set_and_sorts() -> None:
    """Series of both branches, one copy of a series both returned, in Prometheus' label order."""
    a = {"__name__": "m", "cluster": "c1", "namespace": "b"}
    b = {"__name__": "m", "cluster": "c1", "namespace": "a"}
    shared = {"__name__": "m", "cluster": "c1", "exported_namespace": "a", "namespace": "x"}
    points = [[1.0, "1"], [2.0, "2"]]
    out = merge([matrix((a, points), (shared, points)), matrix((shared, points), (b, points))], [], 1 << 20)
    doc = json.loads(out.body)
    assert doc["status"] == "success" and "warnings" not in doc
    assert [r["metric"] for r in doc["data"]["result"]] == [shared, b, a]


def test_merge_of_exemplar_answers_unions_by_series_labels() -> None:
    """query_exemplars branches answer lists of {seriesLabels, exemplars}: merged the same way."""

    def answer(*labels: dict[str, str]) -> BranchAnswer:
        doc = {
            "status": "success",
            "data": [{"seriesLabels": x, "exemplars": [{"value": "1"}]} for x in labels],
        }
        return BranchAnswer(200, "application/json", json.dumps(doc).encode())

    out = json.loads(merge([answer({"a": "2"}, {"a": "1"}), answer({"a": "1"})], ["w"], 1 << 20).body)
    assert [x["seriesLabels"] for x in out["data"]] == [{"a": "1"}, {"a": "2"}] and out["warnings"] == ["w"]


def test_merge_keeps_upstream_warnings_and_adds_the_proxys() -> None:
    """Warnings of every branch (deduplicated) come first, then the proxy's own."""
    out = merge([matrix(warnings=["w1"]), matrix(warnings=["w1", "w2"])], ["left out"], 1 << 20)
    assert json.loads(out.body)["warnings"] == ["w1", "w2", "left out"]


def test_merge_passes_the_first_failing_branch_through() -> None:
    """An upstream error of any branch is the answer, unchanged."""
    bad = BranchAnswer(422, "application/json", b'{"status":"error","errorType":"execution","error":"x"}')
    assert merge([matrix(), bad], ["w"], 1 << 20) is bad


def test_merge_byte_bound_is_across_all_branches() -> None:
    """The bound counts every branch's bytes together and the 400 names it."""
    one = matrix(({"a": "b"}, [[1, "1"]] * 50))
    with pytest.raises(errors.BadRequest, match="bound of"):
        merge([one, one], [], len(one.body) + 10)


def test_pinned_time_only_when_the_caller_gave_none() -> None:
    """A missing `time` is pinned once for every branch; a given one (URL or body) is kept."""
    assert pinned_time([("query", "m[5m]")], [], now=1700000000.5) == [("time", "1700000000.500")]
    assert pinned_time([], [("time", "5")]) == []
    assert pinned_time([("time", "5")], []) == []


def test_run_branches_keeps_order_and_bounds_concurrency() -> None:
    """Answers come back in branch order; no more than the bound run at once."""
    running = peak = 0

    async def ask(text: str) -> BranchAnswer:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (10 - int(text)))
        running -= 1
        return BranchAnswer(200, "application/json", text.encode())

    answers = asyncio.run(run_branches([str(i) for i in range(10)], ask))
    assert [a.body for a in answers] == [str(i).encode() for i in range(10)]
    assert peak <= MAX_CONCURRENT_BRANCHES


def test_splice_adds_a_warnings_key_when_upstream_sent_none() -> None:
    """`…}` becomes `…,"warnings":[…]}` and the JSON is otherwise unchanged."""
    body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
    doc = json.loads(splice_all(body, ['team-b on "x" left out']))
    assert doc == {"status": "success", "data": {"resultType": "vector", "result": []},
                   "warnings": ['team-b on "x" left out']}  # fmt: skip


def test_splice_joins_upstream_warnings() -> None:
    """The proxy's entry goes first in an upstream `warnings` array (empty or not)."""
    body = b'{"status":"success","data":{"resultType":"vector","result":[]},"warnings":["up"]}'
    assert json.loads(splice_all(body, ["ours"]))["warnings"] == ["ours", "up"]
    empty = b'{"status":"success","data":[],"warnings":[]}\n'
    assert json.loads(splice_all(empty, ["ours"]))["warnings"] == ["ours"]


def test_splice_never_writes_a_second_warnings_key() -> None:
    """Upstream warnings longer than the held tail are kept as they are (no duplicate key)."""
    body = b'{"status":"success","data":[],"warnings":["' + b"x" * 500 + b'"]}'
    for size in (1, 7, 64, 600):
        splicer = WarningSplicer(["ours"], tail=100)
        out = b"".join(splicer.feed(body[i : i + size]) for i in range(0, len(body), size)) + splicer.finish()
        assert out == body


def test_splice_leaves_errors_and_odd_bodies_alone() -> None:
    """Error envelopes and bodies not ending like JSON objects pass through byte for byte."""
    err = b'{"status":"error","errorType":"bad_data","error":"x"}'
    assert splice_all(err, ["w"]) == err
    assert splice_all(b"not json", ["w"]) == b"not json"
    assert splice_all(b"", ["w"]) == b""


def test_splice_ignores_a_label_called_warnings() -> None:
    """A label named `warnings` inside data is not mistaken for the envelope's key."""
    body = (
        b'{"status":"success","data":{"resultType":"vector","result":'
        b'[{"metric":{"a":"1","warnings":"x"},"value":[1,"1"]}]}}'
    )
    doc = json.loads(splice_all(body, ["w"]))
    assert doc["warnings"] == ["w"] and doc["data"]["result"][0]["metric"]["warnings"] == "x"


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.text(max_size=20), max_size=30),
    upstream=st.one_of(st.none(), st.lists(st.text(max_size=10), max_size=3)),
    sizes=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=8),
    tail=st.integers(min_value=1, max_value=200),
)
def test_splice_streamed_in_any_chunks_equals_decoding(
    labels: list[str], upstream: list[str] | None, sizes: list[int], tail: int
) -> None:
    """However the body is chunked and however small the held tail, the result decodes to the
    upstream document plus the warnings (tail ≥ the warnings array)."""
    doc: dict[str, object] = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {"l": x}, "value": [1, x]} for x in labels]},
    }
    if upstream is not None:
        doc["warnings"] = upstream
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    splicer = WarningSplicer(["ours"], tail=tail + len(json.dumps(upstream or []).encode()) + 16)
    out, i, k = b"", 0, 0
    while i < len(body):
        size = sizes[k % len(sizes)]
        out += splicer.feed(body[i : i + size])
        i, k = i + size, k + 1
    out += splicer.finish()
    expected = dict(doc, warnings=["ours", *(upstream or [])])
    assert json.loads(out) == expected
