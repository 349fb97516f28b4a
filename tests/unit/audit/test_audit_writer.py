"""The audit writer: complete events, one writer thread, drops counted, 401 floods aggregated."""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from pathlib import Path

import pytest

from proxy.audit.event import MAX_TEXT, AuditEvent, Reach
from proxy.audit.setup import audit_path, open_writer
from proxy.audit.sinks import DAY, FileSink, StreamSink
from proxy.audit.writer import AuditWriter

EVENT_KEYS = {
    "audit",
    "v",
    "time",
    "request_id",
    "hub",
    "subject",
    "username",
    "client",
    "auth",
    "unverified",
    "method",
    "route",
    "query",
    "forwarded",
    "reach",
    "resources",
    "decision",
    "reason",
    "status",
    "upstream_status",
    "bytes",
    "cache",
    "result_cache",
    "latency_ms",
}


class Broken:
    """A sink whose writes fail (a full disk)."""

    def write(self, data: bytes) -> None:
        """Fail."""
        raise OSError("disk full")

    def tick(self, now: float) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""


def _lines(buf: io.BytesIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().decode().splitlines()]


def test_event_is_complete_and_marked() -> None:
    """Every key of the documented event is present, marked audit, unverified fields grouped."""
    buf = io.BytesIO()
    w = AuditWriter(StreamSink(buf)).start()
    w.emit(
        AuditEvent(
            request_id="r1",
            hub="moc",
            subject="u-123",
            username="alice",
            client="grafana",
            auth="bearer",
            source="10.0.0.1",
            user_agent="Grafana/11",
            grafana_user="alice",
            route="/api/v1/query",
            query=["up"],
            forwarded=['up{cluster="c1",namespace="a"}'],
            reach=Reach(projects={"c1": ("a",)}),
            asked=["HUB-moc-CLUSTER-c1-PROJECT-a"],
            granted=["HUB-moc-CLUSTER-c1-PROJECT-a"],
            decision="narrowed",
            status=200,
            upstream_status=200,
            bytes=123,
            cache="miss",
            latency_ms=4.56789,
        )
    )
    w.close()
    (event,) = _lines(buf)
    assert set(event) == EVENT_KEYS
    assert event["audit"] is True
    assert event["unverified"] == {"source": "10.0.0.1", "user_agent": "Grafana/11", "grafana_user": "alice"}
    assert event["reach"] == {"hub_wide": False, "clusters": [], "projects": {"c1": ["a"]}}
    assert event["latency_ms"] == 4.568
    assert str(event["time"]).endswith("Z")


def test_texts_bounded_and_redacted() -> None:
    """A huge query is cut with a marker; a token pasted into a query never reaches the stream."""
    buf = io.BytesIO()
    w = AuditWriter(StreamSink(buf)).start()
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    w.emit(AuditEvent(query=["x" * (MAX_TEXT * 3), f'up{{a="{jwt}"}}'], user_agent=f"Bearer {jwt}"))
    w.close()
    text = buf.getvalue().decode()
    assert jwt not in text
    (event,) = _lines(buf)
    queries = event["query"]
    assert isinstance(queries, list)
    assert len(queries[0]) < MAX_TEXT + 20 and queries[0].endswith("[truncated]")


def test_failed_write_dropped_counted_and_unhealthy() -> None:
    """A failing sink drops the event, counts it, and reports unhealthy (required mode refuses)."""
    w = AuditWriter(Broken(), required=True).start()
    assert w.healthy()
    assert w.emit(AuditEvent(decision="allowed"))
    assert w.flush()
    assert w.dropped == 1 and w.written == 0
    assert not w.healthy()
    w.close()


def test_stdout_replaced_by_a_text_stream_is_a_counted_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout swapped for a text stream (no `.buffer`): the write fails, is counted, and the
    writer thread lives on to write the next event once stdout is a real stream again."""
    w = AuditWriter(StreamSink(), required=False).start()
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert w.emit(AuditEvent(decision="allowed")) and w.flush()
    assert w.dropped == 1 and w.written == 0
    out = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(out))
    assert w.emit(AuditEvent(decision="denied")) and w.flush()
    assert w.written == 1
    w.close()


def test_full_queue_drops_without_blocking() -> None:
    """Beyond the queue bound, emit returns False at once and counts the drop."""
    w = AuditWriter(StreamSink(io.BytesIO()), max_queue=3)  # not started: nothing drains
    results = [w.emit(AuditEvent()) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert w.dropped == 2 and not w.healthy()
    w.close()
    assert w.written == 3


def test_unauthenticated_aggregated_per_source_per_minute() -> None:
    """A flood of 401s is one line per source and minute carrying the count."""
    buf = io.BytesIO()
    w = AuditWriter(StreamSink(buf)).start()
    minute = 29_000_000 * 60
    for _ in range(500):
        w.unauthenticated("203.0.113.9", "/api/v1/query", now=minute + 5)
    for _ in range(3):
        w.unauthenticated("198.51.100.7", "/api/v1/query", now=minute + 10)
    w.unauthenticated("203.0.113.9", "/api/v1/query", now=minute + 65)
    w.close()
    events = _lines(buf)
    counts = sorted((e["unverified"]["source"], e["time"], e["count"]) for e in events)  # type: ignore[index]
    assert [c[2] for c in counts] == [3, 500, 1]
    assert all(e["decision"] == "unauthenticated" and e["status"] == 401 for e in events)


def test_emit_is_cheap() -> None:
    """The request path's part (emit) stays in the microseconds: no encoding, no I/O."""
    w = AuditWriter(StreamSink(io.BytesIO()))
    event = AuditEvent(query=["up"] * 3, reach=Reach(hub_wide=True))
    start = time.perf_counter()
    for _ in range(10_000):
        w.emit(event)
    per_call = (time.perf_counter() - start) / 10_000
    assert per_call < 50e-6
    w.close()


def test_file_rotation_gzip_and_retention(tmp_path: Path) -> None:
    """Rotation compresses the file; rotated files older than the retention go, newer ones stay."""
    sink = FileSink(tmp_path / "audit.log", retention=2 * DAY)
    sink.write(b'{"audit":true}\n')
    rotated = sink.rotate(time.time())
    assert rotated is not None and rotated.name.endswith(".gz")
    assert gzip.decompress(rotated.read_bytes()) == b'{"audit":true}\n'
    old = tmp_path / "audit.log.20000101T000000Z.gz"
    old.write_bytes(gzip.compress(b"{}\n"))
    os.utime(old, (time.time() - 3 * DAY, time.time() - 3 * DAY))
    removed = sink.sweep(time.time())
    assert removed == [old] and rotated.exists()
    sink.write(b'{"audit":true}\n')
    sink.close()
    assert (tmp_path / "audit.log").read_bytes() == b'{"audit":true}\n'


def test_open_writer_targets(tmp_path: Path) -> None:
    """`off` gives no writer; a path gives a file writer, per worker when workers run."""
    assert open_writer("off") is None
    assert audit_path(str(tmp_path / "audit.log"), 2) == tmp_path / "audit.w2.log"
    w = open_writer(str(tmp_path / "audit.log"), worker=1)
    assert w is not None
    w.emit(AuditEvent(decision="allowed"))
    w.close()
    assert json.loads((tmp_path / "audit.w1.log").read_text())["decision"] == "allowed"


@pytest.mark.parametrize(
    "reach,cluster,project,hit",
    [
        (Reach(hub_wide=True), "c1", "a", True),
        (Reach(clusters=("c1",)), "c1", "a", True),
        (Reach(clusters=("c1",)), "c2", None, False),
        (Reach(projects={"c1": ("a",)}), "c1", "a", True),
        (Reach(projects={"c1": ("a",)}), "c1", "b", False),
        (Reach(projects={"c1": ("a",)}), "c1", None, True),
        (Reach(), None, None, False),
    ],
)
def test_reach_touches(reach: Reach, cluster: str | None, project: str | None, hit: bool) -> None:
    """Hub- and cluster-wide reach covers every project below it; a project reach only itself."""
    assert reach.touches(cluster, project) is hit


def test_stdout_pieces_keep_lines_whole() -> None:
    """Writes to a shared pipe are whole lines of at most PIPE_BUF bytes (longer lines alone)."""
    from proxy.audit.sinks import pieces

    lines = [b"a" * 1000 + b"\n"] * 9 + [b"b" * 9000 + b"\n", b"c\n"]
    chunks = pieces(b"".join(lines), limit=4096)
    assert b"".join(chunks) == b"".join(lines)
    assert all(c.endswith(b"\n") for c in chunks)
    assert all(len(c) <= 4096 or c.count(b"\n") == 1 for c in chunks)


def test_stream_sink_writes_to_a_real_pipe() -> None:
    """Through a real pipe's file descriptor: every byte arrives, in order."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "wb") as out, os.fdopen(read_fd, "rb") as back:
        sink = StreamSink(out)
        sink.write(b'{"audit":true,"n":1}\n{"audit":true,"n":2}\n')
        out.close()
        assert back.read() == b'{"audit":true,"n":1}\n{"audit":true,"n":2}\n'


class Unrenderable:
    """An event whose full line cannot be built (a bug in rendering)."""

    def render(self) -> str:
        """Fail."""
        raise ValueError("unusable resource-name part ''")

    def fallback(self, exc: BaseException) -> str:
        """What is known for sure."""
        return json.dumps({"audit": True, "request_id": "r-1", "incomplete": type(exc).__name__})


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_render_failure_is_written_reduced_and_counted_and_the_thread_goes_on() -> None:
    """An event that fails to render is written as its reduced line and counted; the writer
    thread survives and writes the next events; flush does not hang on the failed one."""
    buf = io.BytesIO()
    w = AuditWriter(StreamSink(buf)).start()
    assert w.emit(Unrenderable())
    assert w.emit(AuditEvent(decision="allowed"))
    assert w.flush()
    assert w.emit(AuditEvent(decision="denied"))
    w.close()
    lines = _lines(buf)
    assert lines[0] == {"audit": True, "request_id": "r-1", "incomplete": "ValueError"}
    assert [e["decision"] for e in lines[1:]] == ["allowed", "denied"]
    assert w.render_failed == 1 and w.written == 3
