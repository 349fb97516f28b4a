"""`prom-keycloak-proxy audit`: reads every file shape and answers from the recorded reach."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

from proxy.audit.cli import main, parse_time
from proxy.audit.event import AuditEvent, Reach
from proxy.audit.reader import read_events, unwrap


def _event(t: str, subject: str, reach: Reach | None, decision: str = "allowed", **kw: Any) -> dict[str, Any]:
    e = AuditEvent(
        hub=kw.pop("hub", "moc"),
        subject=subject,
        username=kw.pop("username", subject),
        reach=reach,
        decision=decision,
        **kw,
    ).to_json()
    e["time"] = t
    return e


EVENTS = [
    _event("2026-12-01T09:00:00.000Z", "alice", Reach(projects={"prod": ("team-a",)}), grafana_user="al"),
    _event("2026-12-01T10:00:00.000Z", "bob", Reach(clusters=("test",))),
    _event("2026-12-01T11:00:00.000Z", "dave", Reach(hub_wide=True)),
    _event("2026-12-01T12:00:00.000Z", "carol", Reach(projects={"test": ("team-b",)}), decision="narrowed"),
    _event("2026-12-01T13:00:00.000Z", "eve", None, decision="denied", status=403, reason="no grant"),
    _event("2026-12-02T09:00:00.000Z", "alice", Reach(projects={"prod": ("team-a",)})),
    _event("2026-12-01T11:30:00.000Z", "zed", Reach(hub_wide=True), hub="other"),
]


def _write_all_shapes(tmp_path: Path) -> list[Path]:
    """The same events spread over a plain file, a gzip rotation, CRI and docker-json wrapping."""
    lines = [json.dumps(e) for e in EVENTS]
    plain = tmp_path / "audit.log"
    plain.write_text("\n".join([lines[0], '{"event":"request","level":"info"}', lines[1]]) + "\n")
    rotated = tmp_path / "audit.log.20261201T000000Z.gz"
    rotated.write_bytes(gzip.compress((lines[2] + "\n").encode()))
    cri = tmp_path / "cri.log"
    half = len(lines[3]) // 2
    cri.write_text(
        f"2026-12-01T12:00:00.1Z stdout P {lines[3][:half]}\n"
        f"2026-12-01T12:00:00.1Z stdout F {lines[3][half:]}\n"
        f"2026-12-01T13:00:00.1Z stdout F {lines[4]}\n"
    )
    docker = tmp_path / "docker.json"
    docker.write_text(
        "\n".join(json.dumps({"log": line + "\n", "stream": "stdout", "time": "x"}) for line in lines[5:])
        + "\n"
    )
    return [plain, rotated, cri, docker]


def _run(args: list[str]) -> str:
    out = io.StringIO()
    assert main(args, out) == 0
    return out.getvalue()


def test_reads_every_shape(tmp_path: Path) -> None:
    """Plain, gzip, CRI (partial lines joined) and docker-json wrapped events all come back, nothing else."""
    got = list(read_events(_write_all_shapes(tmp_path)))
    assert sorted(e["time"] for e in got) == sorted(e["time"] for e in EVENTS)


def test_who_counts_wider_reach(tmp_path: Path) -> None:
    """Who accessed prod/team-a: its project reader and the hub-wide reader; not test's readers."""
    files = [str(p) for p in _write_all_shapes(tmp_path)]
    rows = json.loads(
        _run(["who", "--hub", "moc", "--cluster", "prod", "--project", "team-a", "--format", "json", *files])
    )
    assert {(r["subject"], r["via"], r["count"]) for r in rows} == {
        ("alice", "project", "2"),
        ("dave", "hub-wide", "1"),
    }


def test_who_window_and_cluster(tmp_path: Path) -> None:
    """A window keeps only the events in it; the cluster question counts cluster-wide and project readers."""
    files = [str(p) for p in _write_all_shapes(tmp_path)]
    rows = json.loads(
        _run(
            [
                "who",
                "--hub",
                "moc",
                "--cluster",
                "test",
                "--since",
                "2026-12-01T10:30:00",
                "--until",
                "2026-12-02",
                "--format",
                "json",
                *files,
            ]
        )
    )
    assert {r["subject"] for r in rows} == {"carol", "dave"}


def test_subject_and_refusals_csv(tmp_path: Path) -> None:
    """What carol accessed (by scope) and eve's refusal, as CSV."""
    files = [str(p) for p in _write_all_shapes(tmp_path)]
    rows = list(csv.DictReader(io.StringIO(_run(["subject", "carol", "--format", "csv", *files]))))
    assert [(r["scope"], r["count"]) for r in rows] == [("project test/team-b", "1")]
    refused = list(csv.DictReader(io.StringIO(_run(["refusals", "--format", "csv", *files]))))
    assert [(r["subject"], r["decision"], r["status"], r["reason"]) for r in refused] == [
        ("eve", "denied", "403", "no grant")
    ]


def test_table_and_events(tmp_path: Path) -> None:
    """The table names the columns; `events` streams the matching raw events."""
    files = [str(p) for p in _write_all_shapes(tmp_path)]
    table = _run(["who", "--hub", "moc", *files])
    assert table.splitlines()[0].split()[:6] == ["hub", "subject", "via", "count", "first", "last"]
    raw = [json.loads(line) for line in _run(["events", "--subject", "alice", *files]).splitlines()]
    assert len(raw) == 2


def test_unwrap_leaves_plain_lines() -> None:
    """A plain event line is passed through unchanged; a docker wrapper is removed."""
    line = json.dumps(EVENTS[0])
    assert list(unwrap([line])) == [line]
    assert list(unwrap([json.dumps({"log": line + "\n"})])) == [line]


def test_parse_time_forms() -> None:
    """Dates, zoned date-times and relative durations become comparable UTC strings."""
    assert parse_time("2026-12-01") == "2026-12-01T00:00:00.000Z"
    assert parse_time("2026-12-01T10:00:00+01:00") == "2026-12-01T09:00:00.000Z"
    assert parse_time("1h", now=3600.0) == "1970-01-01T00:00:00.000Z"
