"""Stored extents against a real Prometheus (docs/caching.md): pieces of a range query fetched
apart, stored, merged and assembled equal Prometheus' own answer for the whole range — series
order (labels.Compare over awkward labels), series present in some pieces only, day splits."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.results.extents import (
    Extent,
    assemble,
    boundary_ms,
    decode_extents,
    encode_extents,
    extent_from_answer,
    grid_of,
    missing,
    pieces,
    trimmed,
    union,
)
from proxy_demo.certs import Pki
from proxy_demo.dataset import Series
from proxy_demo.prometheus import Binaries, PrometheusServer

DAY = 86_400
# yesterday's UTC midnight: the data crosses it, so day pieces split inside the queried ranges
MIDNIGHT = (int(time.time()) // DAY - 1) * DAY
FIRST, LAST = MIDNIGHT - 3 * 3600, MIDNIGHT + 3 * 3600
# label sets whose Prometheus order differs from naive orders: upper case before `__name__`,
# prefixes, `10` before `1_`, UTF-8 (é, Ω, full-width z, an emoji), escapes
LABELS: list[dict[str, str]] = [
    {},
    {"a": "1"},
    {"a": "1", "b": "0"},
    {"a": "1", "aa": "0"},
    {"a": "10"},
    {"a": "1_"},
    {"a": "2"},
    {"b": "0"},
    {"Z": "x"},
    {"Z": "x", "a": "1"},
    {"_x": "1"},
    {"a": "é"},
    {"a": "Ω"},
    {"a": "ｚ"},
    {"a": "😀"},
    {"a": 'q"uo\\te'},
]
QUERIES = [
    "m",
    '{__name__=~"m|M|m_x|_m"}',
    "sum by (a, Z) (m)",
    "m offset 7m",
    "rate(m[5m])",
    'label_replace(m, "q", "$1", "a", "(.*)")',
    "max_over_time(m[10m:1m])",
    "m > 40",
    "topk(3, m)",
    "windowed",
]


def _series() -> list[Series]:
    """Full-range series of awkward label sets, other names, and series alive in windows only."""
    times = range(FIRST, LAST + 1, 60)
    out = [
        Series({"__name__": "m", **labels}, [(t, float((t // 60 + 7 * i) % 60)) for t in times])
        for i, labels in enumerate(LABELS)
    ]
    out += [Series({"__name__": name}, [(t, 1.0) for t in times]) for name in ("M", "m_x", "_m")]
    windows = [(-3600, -1800), (-300, 300), (600, 1200), (5400, 5460)]
    for i, (lo, hi) in enumerate(windows):
        alive = range(MIDNIGHT + lo, MIDNIGHT + hi + 1, 60)
        out.append(Series({"__name__": "windowed", "w": str(i)}, [(t, float(t % 7)) for t in alive]))
    return out


@pytest.fixture(scope="module")
def awkward_prometheus(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, prometheus_binaries: Binaries
) -> Iterator[PrometheusServer]:
    """A real Prometheus (mTLS, no rules) over the awkward series."""
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus-extents"),
        pki,
        _series(),
        rules=None,
        binaries=prometheus_binaries,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fetch(server: PrometheusServer, query: str, first_ms: int, last_ms: int, step_ms: int) -> list[Any]:
    """Prometheus' matrix for the grid points [first, last]."""
    data = server.query_range(query, first_ms / 1000, last_ms / 1000, step_ms / 1000)
    assert data["resultType"] == "matrix"
    result: list[Any] = data["result"]
    return result


@st.composite
def _span(draw: st.DrawFn, first_ms: int, last_ms: int, step_ms: int) -> tuple[int, int]:
    """A grid sub-range of [first, last]."""
    n = (last_ms - first_ms) // step_ms
    i = draw(st.integers(0, n))
    return first_ms + i * step_ms, first_ms + draw(st.integers(i, n)) * step_ms


@pytest.mark.prometheus
@pytest.mark.parametrize("query", QUERIES)
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    step_s=st.sampled_from([15, 30, 60, 90, 420, 3600]),
    split_ms=st.sampled_from([DAY * 1000, 3_600_000, 2_700_000]),
    data=st.data(),
)
def test_pieces_stored_apart_assemble_into_prometheus_own_answer(
    awkward_prometheus: PrometheusServer, query: str, step_s: int, split_ms: int, data: st.DataObject
) -> None:
    """Per piece: an extent another request stored, the missing stretches fetched, union, codec,
    trim; assembled over the pieces, the answer equals Prometheus' whole answer, JSON text included."""
    step = step_s * 1000
    lo, hi = math.ceil(FIRST / step_s) * step, LAST * 1000
    start, end = data.draw(_span(lo, hi, step).filter(lambda s: (s[1] - s[0]) // step <= 400))
    grid = grid_of(start, end, step)
    assert grid is not None
    parts = []
    for piece in pieces(grid, split_ms):
        bucket_first = max(lo, boundary_ms(piece.bucket, step, split_ms))
        bucket_last = min(hi, boundary_ms(piece.bucket + 1, step, split_ms) - step)
        have: list[Extent] = []
        if data.draw(st.booleans()):
            a, b = data.draw(_span(bucket_first, bucket_last, step))
            have = decode_extents(
                encode_extents(
                    [extent_from_answer(a, b, step, _fetch(awkward_prometheus, query, a, b, step))]
                )
            )
        fetched = [
            extent_from_answer(a, b, step, _fetch(awkward_prometheus, query, a, b, step))
            for a, b in missing(piece, step, have)
        ]
        stored = decode_extents(encode_extents(union([*have, *fetched])))
        (whole,) = [e for e in stored if e.first_ms <= piece.first_ms and piece.last_ms <= e.last_ms]
        parts.append(trimmed(whole, piece.first_ms, piece.last_ms))
    expected = _fetch(awkward_prometheus, query, start, end, step)
    got = assemble(parts)
    assert got == expected
    assert json.dumps(got, ensure_ascii=False) == json.dumps(expected, ensure_ascii=False)
