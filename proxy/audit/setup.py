"""Build the process's audit writer from `PROXY_AUDIT_LOG` (`stdout`, a file path, or `off`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from proxy.audit.sinks import DAY, FileSink, StreamSink
from proxy.audit.writer import AuditWriter

if TYPE_CHECKING:
    from proxy.config import Settings
    from proxy.services import Services

# The worker index when several processes share the port (set by the server before serving):
# each worker writes its own file, so no two processes ever append to one.
WORKER: int | None = None


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


def install(svc: Services, settings: Settings, routes: tuple[str, ...]) -> AuditWriter | None:
    """Open the writer and register the end-of-request hook writing one event per request."""
    from proxy.audit.hook import AuditHook

    writer = open_writer(
        settings.audit_log,
        required=settings.audit_required,
        retention_days=settings.audit_retention / DAY,
        worker=WORKER,
    )
    svc.audit = writer
    for view in svc.by_hub.values():  # each hub's view of the services writes to the same stream
        view.audit = writer
    if writer is not None:
        svc.request_done.append(AuditHook(writer, routes, settings))
    return writer
