"""Step grids, day pieces, stored extents and their merge (docs/caching.md), and the PromQL facts
the results cache decides by: pure parts, no network."""

from __future__ import annotations

import functools
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import promql
from proxy.lookback import cache_bypass, newest_touch_ms
from proxy.promql.scope import LabelModel
from proxy.results.extents import (
    Extent,
    Grid,
    Piece,
    assemble,
    boundary_ms,
    bucket_of,
    decode_extents,
    encode_extents,
    extent_from_answer,
    grid_of,
    missing,
    pieces,
    trimmed,
    union,
)

DAY = 86_400_000
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Truth = dict[tuple[tuple[str, str], ...], tuple[dict[str, str], dict[int, Any]]]

# -- the test's own model of an upstream matrix ------------------------------------------------------


def _compare(a: dict[str, str], b: dict[str, str]) -> int:
    """Prometheus' labels.Compare written out: sorted pairs, name then value, shorter first."""
    pa, pb = sorted(a.items()), sorted(b.items())
    for (na, va), (nb, vb) in zip(pa, pb, strict=False):
        if na != nb:
            return -1 if na < nb else 1
        if va != vb:
            return -1 if va < vb else 1
    return len(pa) - len(pb)


def _compare_series(a: dict[str, Any], b: dict[str, Any]) -> int:
    """Two series in Prometheus' matrix order."""
    return _compare(a["metric"], b["metric"])


def _seconds(t_ms: int) -> Any:
    """A time as json.loads gives Prometheus' JSON: an int on whole seconds, else a float."""
    return json.loads(str(t_ms // 1000) if t_ms % 1000 == 0 else repr(t_ms / 1000))


def answer(truth: Truth, first_ms: int, last_ms: int) -> list[dict[str, Any]]:
    """The matrix the upstream gives for [first, last]: series with points there, Prometheus order."""
    out = []
    for metric, points in truth.values():
        floats = [
            [_seconds(t), v]
            for t, v in sorted(points.items())
            if first_ms <= t <= last_ms and isinstance(v, str)
        ]
        hists = [
            [_seconds(t), v]
            for t, v in sorted(points.items())
            if first_ms <= t <= last_ms and isinstance(v, dict)
        ]
        series: dict[str, Any] = {"metric": metric}
        if floats:
            series["values"] = floats
        if hists:
            series["histograms"] = hists
        if len(series) > 1:
            out.append(series)
    return sorted(out, key=functools.cmp_to_key(_compare_series))


LABEL_SETS = st.dictionaries(
    st.sampled_from(["__name__", "a", "b", "Z", "job", "ü"]),
    st.sampled_from(["x", "y", "xy", "1", "é", "ｚ", "😀"]),
    max_size=3,
)
HISTOGRAM = st.builds(
    lambda c: {"count": str(c), "sum": f"{c / 2}", "buckets": [[0, "0", "1", str(c)]]}, st.integers(1, 9)
)
VALUE = st.one_of(st.sampled_from(["1", "0.5", "NaN", "+Inf", "-2e-07"]), HISTOGRAM)


@st.composite
def grids(draw: st.DrawFn, max_points: int = 120) -> tuple[Grid, int]:
    """A step-aligned grid and a split interval cutting it into a few pieces."""
    step = draw(st.sampled_from([1, 250, 1000, 15_000, 30_000, 420_000, 3_600_000]) | st.integers(1, 10**7))
    start = draw(st.integers(-1000, 10**6)) * step
    count = draw(st.integers(0, max_points))
    grid = grid_of(start, start + count * step + draw(st.integers(0, step - 1)), step)
    assert grid is not None
    split = draw(st.sampled_from([DAY, 3_600_000]) | st.integers(1, 40 * step))
    return grid, split


@st.composite
def truths(draw: st.DrawFn, grid: Grid) -> Truth:
    """A true matrix over the grid: sparse series, some with floats and native histograms."""
    times = list(range(grid.start_ms, grid.end_ms + 1, grid.step_ms))
    truth: Truth = {}
    for metric in draw(st.lists(LABEL_SETS, max_size=5, unique_by=lambda m: tuple(sorted(m.items())))):
        chosen = draw(st.lists(st.sampled_from(times), unique=True, max_size=len(times)))
        truth[tuple(sorted(metric.items()))] = (metric, {t: draw(VALUE) for t in chosen})
    return truth


@st.composite
def spans(draw: st.DrawFn, first_ms: int, last_ms: int, step_ms: int) -> tuple[int, int]:
    """A grid sub-range [a, b] of [first, last]."""
    n = (last_ms - first_ms) // step_ms
    i = draw(st.integers(0, n))
    j = draw(st.integers(i, n))
    return first_ms + i * step_ms, first_ms + j * step_ms


def covered(ranges: list[tuple[int, int]], step_ms: int) -> list[int]:
    """Every grid time of the ranges, in order, repeats kept."""
    return sorted(t for a, b in ranges for t in range(a, b + 1, step_ms))


# -- grids and pieces ------------------------------------------------------------------------------


def test_grid_of_needs_a_positive_aligned_step_and_floors_the_end() -> None:
    """Unaligned starts, zero steps and reversed ranges have no grid; the end drops onto the grid."""
    assert grid_of(60_000, 59_000, 30_000) is None
    assert grid_of(45_000, 90_000, 30_000) is None
    assert grid_of(0, 90_000, 0) is None
    assert grid_of(60_000, 179_999, 30_000) == Grid(60_000, 150_000, 30_000)
    assert grid_of(-60_000, -60_000, 30_000) == Grid(-60_000, -60_000, 30_000)


def test_day_boundaries_land_on_the_nearest_grid_point() -> None:
    """A 7-minute step cuts at 1 d 2 min (206 steps), not at 205 steps before midnight."""
    grid = grid_of(203 * 420_000, 209 * 420_000, 420_000)
    assert grid is not None
    assert boundary_ms(1, 420_000, DAY) == 206 * 420_000
    assert pieces(grid, DAY) == [
        Piece(0, 203 * 420_000, 205 * 420_000),
        Piece(1, 206 * 420_000, 209 * 420_000),
    ]
    assert [p.bucket for p in pieces(grid_of(0, 3 * DAY, 30_000) or grid, DAY)] == [0, 1, 2, 3]


def test_pieces_refuse_a_non_positive_split() -> None:
    """A zero split interval is a programming error, not an endless loop."""
    with pytest.raises(ValueError):
        pieces(Grid(0, 60_000, 30_000), 0)


@PROPERTY
@given(grids(max_points=400), st.data())
def test_pieces_cover_the_grid_once_with_start_independent_boundaries(
    drawn: tuple[Grid, int], data: st.DataObject
) -> None:
    """Pieces cover every grid point once, in order; each lies in one bucket whose boundary is the
    grid point nearest bucket·split; another start on the same step puts shared points alike."""
    grid, split = drawn
    step = grid.step_ms
    cut = pieces(grid, split)
    assert covered([(p.first_ms, p.last_ms) for p in cut], step) == list(
        range(grid.start_ms, grid.end_ms + 1, step)
    )
    assert [p.bucket for p in cut] == sorted({p.bucket for p in cut})
    for p in cut:
        lo, hi = boundary_ms(p.bucket, step, split), boundary_ms(p.bucket + 1, step, split)
        assert lo % step == 0 and abs(2 * (lo - p.bucket * split)) <= step
        assert lo <= p.first_ms <= p.last_ms < hi
        assert p.first_ms in (grid.start_ms, lo) and p.last_ms in (grid.end_ms, hi - step)
    other_start = grid.start_ms + data.draw(st.integers(-50, 50)) * step
    other = grid_of(other_start, max(other_start, grid.end_ms + data.draw(st.integers(-50, 50)) * step), step)
    assert other is not None
    where = {t: p.bucket for p in cut for t in range(p.first_ms, p.last_ms + 1, step)}
    for p in pieces(other, split):
        for t in range(p.first_ms, p.last_ms + 1, step):
            assert where.get(t, p.bucket) == p.bucket == bucket_of(t, step, split)


# -- missing, storing, merging ---------------------------------------------------------------------


@PROPERTY
@given(grids(), st.data())
def test_missing_is_exactly_the_uncovered_grid_points(drawn: tuple[Grid, int], data: st.DataObject) -> None:
    """The missing ranges and the stored extents together cover the piece, missing ones once,
    maximal (never two adjacent gaps), and no missing point is stored."""
    grid, _ = drawn
    step = grid.step_ms
    piece = Piece(0, grid.start_ms, grid.end_ms)
    wide = (grid.start_ms - 5 * step, grid.end_ms + 5 * step)
    have = [Extent(*data.draw(spans(*wide, step)), step, []) for _ in range(data.draw(st.integers(0, 4)))]
    gaps = missing(piece, step, have)
    stored = {t for e in have for t in range(e.first_ms, e.last_ms + 1, step)}
    holes = covered(gaps, step)
    assert len(holes) == len(set(holes))
    assert set(holes) == {t for t in range(piece.first_ms, piece.last_ms + 1, step) if t not in stored}
    assert all(b + step < c for (_, b), (c, _) in itertools.pairwise(gaps))


def test_missing_ignores_extents_of_another_step() -> None:
    """An extent stored for another step (or off the grid) covers nothing of this piece."""
    piece = Piece(0, 0, 120_000)
    assert missing(piece, 30_000, [Extent(0, 120_000, 60_000, [])]) == [(0, 120_000)]
    assert missing(piece, 30_000, [Extent(30_000, 60_000, 30_000, [])]) == [(0, 0), (90_000, 120_000)]


@PROPERTY
@given(grids(), st.data())
def test_stored_extents_plus_fetched_gaps_reproduce_the_upstream_answer(
    drawn: tuple[Grid, int], data: st.DataObject
) -> None:
    """Per piece: arbitrary extents stored earlier (through the codec), the missing ranges fetched,
    union, trim and assemble: the answer equals the upstream's own, down to its JSON text."""
    grid, split = drawn
    step = grid.step_ms
    truth = data.draw(truths(grid))
    first, last = data.draw(spans(grid.start_ms, grid.end_ms, step))
    request = grid_of(first, last, step)
    assert request is not None
    parts = []
    fetched = 0
    for piece in pieces(request, split):
        # earlier requests stored any stretch of this bucket inside the known grid
        lo = max(grid.start_ms, boundary_ms(piece.bucket, step, split))
        hi = min(grid.end_ms, boundary_ms(piece.bucket + 1, step, split) - step)
        stored = [data.draw(spans(lo, hi, step)) for _ in range(data.draw(st.integers(0, 3)))]
        have = [extent_from_answer(a, b, step, answer(truth, a, b)) for a, b in stored]
        if data.draw(st.booleans()):
            have = union(have)
        have = decode_extents(encode_extents(have))
        gaps = missing(piece, step, have)
        fetched += len(covered(gaps, step))
        filled = [extent_from_answer(a, b, step, answer(truth, a, b)) for a, b in gaps]
        merged = union([*have, *filled], max_extents=100)
        whole = [e for e in merged if e.first_ms <= piece.first_ms and piece.last_ms <= e.last_ms]
        assert len(whole) == 1
        parts.append(trimmed(whole[0], piece.first_ms, piece.last_ms))
    assert fetched <= len(covered([(first, last)], step))
    expected = answer(truth, first, last)
    got = assemble(parts)
    assert got == expected
    assert json.dumps(got) == json.dumps(expected)


# the order Prometheus 2.42 gave these label sets in a range query's matrix (the integration test
# tests/integration/test_results_extents_prometheus.py checks it against the real server)
PROMETHEUS_ORDER: list[dict[str, str]] = [
    {"Z": "x", "__name__": "m"},
    {"Z": "x", "__name__": "m", "a": "1"},
    {"__name__": "m"},
    {"__name__": "m", "_x": "1"},
    {"__name__": "m", "a": "1"},
    {"__name__": "m", "a": "1", "aa": "0"},
    {"__name__": "m", "a": "1", "b": "0"},
    {"__name__": "m", "a": "10"},
    {"__name__": "m", "a": "1_"},
    {"__name__": "m", "a": "2"},
    {"__name__": "m", "a": 'q"uo\\te'},
    {"__name__": "m", "a": "é"},
    {"__name__": "m", "a": "Ω"},
    {"__name__": "m", "a": "ｚ"},
    {"__name__": "m", "a": "😀"},
    {"__name__": "m", "b": "0"},
]


@given(st.permutations(PROMETHEUS_ORDER), st.integers(0, len(PROMETHEUS_ORDER)))
def test_assemble_orders_series_as_prometheus_does(shuffled: list[dict[str, str]], cut: int) -> None:
    """Series in any order, split over two parts, come out in the order Prometheus gives them."""
    parts = [[{"metric": m, "values": [[0, "1"]]} for m in shuffled[:cut]]]
    parts.append([{"metric": m, "values": [[1, "1"]]} for m in shuffled[cut:]])
    assert [s["metric"] for s in assemble(parts)] == PROMETHEUS_ORDER


@PROPERTY
@given(grids(), st.data())
def test_assemble_joins_disjoint_fetches_into_the_whole_answer(
    drawn: tuple[Grid, int], data: st.DataObject
) -> None:
    """The grid cut anywhere, each stretch fetched on its own: assembled, they are the whole answer
    (series missing from some stretches included)."""
    grid, _ = drawn
    step = grid.step_ms
    truth = data.draw(truths(grid))
    n = (grid.end_ms - grid.start_ms) // step
    cuts = sorted(data.draw(st.sets(st.integers(1, n), max_size=5))) if n else []
    edges = [grid.start_ms, *(grid.start_ms + c * step for c in cuts), grid.end_ms + step]
    parts = [answer(truth, a, b - step) for a, b in itertools.pairwise(edges)]
    assert assemble(parts) == answer(truth, grid.start_ms, grid.end_ms)


@PROPERTY
@given(grids(), st.data())
def test_union_merges_overlapping_and_adjacent_extents(drawn: tuple[Grid, int], data: st.DataObject) -> None:
    """Union keeps every stored point once, merges extents that touch or overlap, leaves a gap of
    two steps or more apart, and with a limit keeps the newest extents in time."""
    grid, _ = drawn
    step = grid.step_ms
    truth = data.draw(truths(grid))
    ranges = [data.draw(spans(grid.start_ms, grid.end_ms, step)) for _ in range(data.draw(st.integers(1, 6)))]
    merged = union([extent_from_answer(a, b, step, answer(truth, a, b)) for a, b in ranges], max_extents=100)
    assert covered([(e.first_ms, e.last_ms) for e in merged], step) == sorted(set(covered(ranges, step)))
    assert all(a.last_ms + step < b.first_ms for a, b in itertools.pairwise(merged))
    for e in merged:
        assert e.step_ms == step and e.series == answer(truth, e.first_ms, e.last_ms)
    limit = data.draw(st.integers(1, 3))
    assert (
        union([extent_from_answer(a, b, step, answer(truth, a, b)) for a, b in ranges], limit)
        == merged[-limit:]
    )


def test_union_lets_the_later_extent_win_where_two_overlap() -> None:
    """A point stored twice comes from the extent given last (the fresher fetch)."""
    old = extent_from_answer(
        0, 60_000, 30_000, [{"metric": {"a": "1"}, "values": [[0, "1"], [30, "1"], [60, "1"]]}]
    )
    new = extent_from_answer(
        30_000, 90_000, 30_000, [{"metric": {"a": "1"}, "values": [[30, "2"], [90, "2"]]}]
    )
    (merged,) = union([old, new])
    assert (merged.first_ms, merged.last_ms) == (0, 90_000)
    assert merged.series == [{"metric": {"a": "1"}, "values": [[0, "1"], [30, "2"], [90, "2"]]}]


def test_extent_from_answer_keeps_json_values_and_drops_points_outside() -> None:
    """Timestamps and values stay the upstream's JSON values; points outside the extent and series
    left without points are dropped; series come in Prometheus' order."""
    result = [
        {"metric": {"b": "1"}, "values": [[1700000000.5, "1"], [1700000001, "2"]]},
        {"metric": {"a": "1"}, "histograms": [[1700000001, {"count": "1"}]]},
        {"metric": {"c": "1"}, "values": [[1700000000.5, "3"]]},
    ]
    e = extent_from_answer(1_700_000_001_000, 1_700_000_001_000, 500, result)
    assert e.series == [
        {"metric": {"a": "1"}, "histograms": [[1700000001, {"count": "1"}]]},
        {"metric": {"b": "1"}, "values": [[1700000001, "2"]]},
    ]
    assert trimmed(e, 0, 1) == []


@PROPERTY
@given(grids(), st.data())
def test_extent_from_a_wider_answer_keeps_exactly_the_points_inside(
    drawn: tuple[Grid, int], data: st.DataObject
) -> None:
    """Points before and after the extent are dropped (series left empty too), nothing inside is."""
    grid, _ = drawn
    step = grid.step_ms
    truth = data.draw(truths(grid))
    first, last = data.draw(spans(grid.start_ms, grid.end_ms, step))
    wide = extent_from_answer(first, last, step, answer(truth, grid.start_ms, grid.end_ms))
    assert wide == Extent(first, last, step, answer(truth, first, last))
    assert (
        trimmed(
            extent_from_answer(grid.start_ms, grid.end_ms, step, answer(truth, grid.start_ms, grid.end_ms)),
            first,
            last,
        )
        == wide.series
    )


@pytest.mark.parametrize(
    "result",
    [
        {"metric": {}},
        [{"metric": {"a": 1}, "values": [[0, "1"]]}],
        [{"metric": {"a": "1"}, "values": [[0, 1]]}],
        [{"metric": {"a": "1"}, "values": [[0.25, "1"]]}],
        [{"metric": {"a": "1"}, "values": [[1, "1"], [0, "1"]]}],
        [{"metric": {"a": "1"}, "values": [[True, "1"]]}],
        [{"metric": {"a": "1"}, "values": [[0, "1"]], "exemplars": []}],
        [{"metric": {"a": "1"}, "histograms": [[0, "1"]]}],
        [{"metric": {"a": "1"}, "values": [[0, "1"]]}, {"metric": {"a": "1"}, "values": [[1, "1"]]}],
    ],
)
def test_extent_from_answer_refuses_malformed_matrices(result: Any) -> None:
    """An answer the cache cannot represent exactly is an error (the request then goes uncached)."""
    with pytest.raises(ValueError):
        extent_from_answer(0, 60_000, 500, result)


# -- the stored entry's codec ----------------------------------------------------------------------


@PROPERTY
@given(grids(), st.data())
def test_encoding_round_trips_and_every_prefix_is_refused(
    drawn: tuple[Grid, int], data: st.DataObject
) -> None:
    """decode(encode(x)) == x, and a truncated entry is refused rather than half read."""
    grid, _ = drawn
    step = grid.step_ms
    truth = data.draw(truths(grid))
    ranges = [data.draw(spans(grid.start_ms, grid.end_ms, step)) for _ in range(data.draw(st.integers(0, 3)))]
    extents = [extent_from_answer(a, b, step, answer(truth, a, b)) for a, b in ranges]
    raw = encode_extents(extents)
    assert decode_extents(raw) == extents
    for cut in {0, 1, len(raw) // 2, len(raw) - 1}:
        with pytest.raises(ValueError):
            decode_extents(raw[:cut])


GOOD = [{"metric": {"a": "1"}, "values": [[0, "1"], [0.5, "2"]]}]


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"v": 2, "e": []},
        {"v": 1},
        {"v": 1, "e": {}},
        {"v": 1, "e": [[0, 500, 500]]},
        {"v": 1, "e": [[0, 500, 0, GOOD]]},
        {"v": 1, "e": [[500, 0, 500, GOOD]]},
        {"v": 1, "e": [[250, 500, 500, GOOD]]},
        {"v": 1, "e": [[0, 750, 500, GOOD]]},
        {"v": 1, "e": [[0, 500, True, GOOD]]},
        {"v": 1, "e": [[0.0, 500, 500, GOOD]]},
        {"v": 1, "e": [[0, 0, 500, GOOD]]},
        {"v": 1, "e": [[0, 500, 500, {}]]},
        {"v": 1, "e": [[0, 500, 500, [[]]]]},
        {"v": 1, "e": [[0, 500, 500, [{"values": [[0, "1"]]}]]]},
        {"v": 1, "e": [[0, 500, 500, [{"metric": [], "values": [[0, "1"]]}]]]},
        {"v": 1, "e": [[0, 500, 500, [{"metric": {}, "values": {}}]]]},
        {"v": 1, "e": [[0, 500, 500, [{"metric": {}, "values": [[0]]}]]]},
        {"v": 1, "e": [[0, 500, 500, [{"metric": {}, "values": [["0", "1"]]}]]]},
        {"v": 1, "e": [[0, 500, 500, [{"metric": {}, "values": [[0, "1"], [0, "1"]]}]]]},
        {"v": 1, "e": [[0, 500, 500, [{"metric": {}, "values": [[0.25, "1"]]}]]]},
        {"v": 1, "e": [[0, 500, 500, [{"metric": {}, "histograms": [[0, []]]}]]]},
        {"v": 1, "e": [[0, 500, 500, [{"metric": {}, "values": [[0, "1"]], "x": 1}]]]},
        {
            "v": 1,
            "e": [
                [0, 500, 500, [{"metric": {}, "values": [[0, "1"]]}, {"metric": {}, "values": [[0, "2"]]}]]
            ],
        },
    ],
)
def test_decode_refuses_malformed_entries(doc: Any) -> None:
    """Wrong shape, types, grid, order, ranges or duplicate series: ValueError, never a partial read."""
    with pytest.raises(ValueError):
        decode_extents(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe",
        b"{",
        b"null",
        b"[" * 100_000,
        b'{"v":1,"e":[[0,500,500,[{"metric":{},"values":[[NaN,"1"]]}]]]}',
    ],
)
def test_decode_refuses_garbage(raw: bytes) -> None:
    """Empty, non-UTF-8, truncated, deeply nested or NaN-timestamped bytes are a ValueError."""
    with pytest.raises(ValueError):
        decode_extents(raw)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@PROPERTY
@given(
    st.one_of(
        JSON,
        st.builds(lambda e: {"v": 1, "e": e}, JSON),
        st.builds(lambda s: {"v": 1, "e": [[0, 0, 1, s]]}, JSON),
    )
)
def test_decode_of_arbitrary_json_is_a_value_error_or_a_faithful_read(doc: Any) -> None:
    """Any JSON value is either refused with ValueError or read into extents that encode back."""
    raw = json.dumps(doc).encode()
    try:
        extents = decode_extents(raw)
    except ValueError:
        return
    assert decode_extents(encode_extents(extents)) == extents


# -- the PromQL facts ------------------------------------------------------------------------------

LIMITS = promql.Limits(max_bytes=12288, max_depth=24, max_operators=48, max_regex_cost=12000)
T = 1_800_000_000_000


def _trees(query: str) -> tuple[Any, ...]:
    """The query's parsed trees, as the analysis hands them to the cache."""
    return tuple(promql.analyse_query(query, LIMITS, LabelModel()).trees)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("up", None),
        ("rate(up[5m] offset 1h)", None),
        ("max_over_time(rate(up[5m])[1h:1m] offset 1d)", None),
        ("1 + time()", None),
        ("up @ 1700000000", "@ modifier"),
        ("rate(up[5m] @ 1700000000.5)", "@ modifier"),
        ("max_over_time(up[1h:1m] @ 1700000000)", "@ modifier"),
        ("sum by (job) (up) / on (job) group_left count(up @ 100)", "@ modifier"),
        ("up @ start()", "start()/end()"),
        ("rate(up[5m] @ end())", "start()/end()"),
        ("max_over_time((up @ start())[1h:1m])", "start()/end()"),
        ("max_over_time(up[1h:1m] @ end())", "start()/end()"),
        ("-(topk(3, up @ end()))", "start()/end()"),
        ("up offset -5m", "negative offset"),
        ("rate(up[5m] offset -1m)", "negative offset"),
        ("max_over_time(up[1h:1m] offset -1h)", "negative offset"),
        ("max_over_time((up offset -1s)[1h:1m] offset 1h)", "negative offset"),
        ('label_replace(up offset -1s, "a", "b", "c", "d")', "negative offset"),
    ],
)
def test_cache_bypass_finds_at_and_negative_offsets_anywhere(query: str, reason: str | None) -> None:
    """`@` (timestamps, start(), end()) and negative offsets anywhere, subqueries included, bypass."""
    assert cache_bypass(_trees(query)) == reason


@pytest.mark.parametrize(
    ("query", "newest"),
    [
        ("up", T),
        ("vector(1)", T),
        ("time() - 1", T),
        ("up offset 1h", T - 3_600_000),
        ("rate(up[5m] offset 10m)", T - 600_000),
        ("max_over_time(rate(up[5m])[1h:1m] offset 1d)", T - DAY),
        ("max_over_time((up offset 1h)[1d:5m] offset 1h)", T - 7_200_000),
        ("up offset 1h + on () vector(1)", T - 3_600_000),
        ("up offset 2h or up offset 1h", T - 3_600_000),
        ("up offset -5m", T + 300_000),
        ("up offset 1ms", T - 1),
    ],
)
def test_newest_touch_is_the_latest_sample_time_read(query: str, newest: int) -> None:
    """Evaluating at T reads nothing newer than T minus the smallest offset along any path."""
    assert newest_touch_ms(_trees(query), T) == newest
