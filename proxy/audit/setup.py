"""Build the process's audit writer from `PROXY_AUDIT_LOG` (`stdout`, a file path, or `off`)."""

from __future__ import annotations

import os
from pathlib import Path

from proxy.audit.sinks import DAY, FileSink, StreamSink
from proxy.audit.writer import AuditWriter


def audit_path(target: str, worker: int | None = None) -> Path:
    """The file one process writes: workers write their own files (`audit.log` → `audit.w2.log`)."""
    path = Path(target)
    if worker is None:
        return path
    return path.with_name(f"{path.stem}.w{worker}{path.suffix}")


def open_writer(
    target: str,
    *,
    required: bool = False,
    retention_days: float = 90,
    worker: int | None = None,
) -> AuditWriter | None:
    """A started writer for `target`, or None for `off`."""
    if target.strip().lower() == "off":
        return None
    if target.strip().lower() in ("stdout", "-", ""):
        sink: StreamSink | FileSink = StreamSink()
    else:
        sink = FileSink(audit_path(os.path.expanduser(target), worker), retention=retention_days * DAY)
    return AuditWriter(sink, required=required).start()
