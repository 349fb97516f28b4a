"""Read audit events back: plain, rotated and gzip files, and lines wrapped by a log collector.

Everything is a generator: a month of a busy proxy is streamed line by line, never loaded.
Wrappers understood: the CRI format kubelet writes (`<time> stdout F <line>`, partial `P` lines
joined), Docker's json-file (`{"log": "...", "stream": ..., "time": ...}`) and collectors that put
the line under `log` or `message`; anything else on the stream (the proxy's own log lines) is
skipped — an event is a JSON object carrying `"audit": true`.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

_CRI = re.compile(r"^(?P<time>\S+) (?P<stream>stdout|stderr) (?P<tag>[FP])(?::\S*)? (?P<line>.*)$")
_GZIP_MAGIC = b"\x1f\x8b"


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, and every regular file inside a named directory, oldest name first."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file())
        else:
            out.append(path)
    return out


def open_text(path: Path) -> TextIO:
    """A text stream over a plain or gzip file (recognised by its magic bytes, not its name)."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, closed by it
    head = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    binary: Any = gzip.GzipFile(fileobj=raw) if head == _GZIP_MAGIC else raw
    return io.TextIOWrapper(binary, encoding="utf-8", errors="replace")


def unwrap(lines: Iterable[str]) -> Iterator[str]:
    """The proxy's own lines out of collector-wrapped ones (CRI partial lines joined)."""
    partial: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            continue
        cri = _CRI.match(line)
        if cri is not None and not line.startswith("{"):
            partial.append(cri.group("line"))
            if cri.group("tag") == "F":
                yield "".join(partial)
                partial = []
            continue
        if line.startswith("{") and '"audit"' not in line[:40] and ('"log"' in line or '"message"' in line):
            inner = _wrapped(line)
            if inner is not None:
                yield inner
                continue
        yield line
    if partial:
        yield "".join(partial)


def _wrapped(line: str) -> str | None:
    try:
        outer = json.loads(line)
    except ValueError:
        return None
    if not isinstance(outer, dict) or outer.get("audit") is True:
        return None
    inner = outer.get("log", outer.get("message"))
    return inner.rstrip("\n") if isinstance(inner, str) else None


def events_from_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Audit events among (unwrapped) lines; other lines and broken JSON are skipped."""
    for line in unwrap(lines):
        if '"audit"' not in line:
            continue
        start = line.find("{")
        if start < 0:
            continue
        try:
            event = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("audit") is True:
            yield event


def read_events(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every audit event of these files and directories, file by file, line by line."""
    for path in expand(paths):
        with open_text(path) as stream:
            yield from events_from_lines(stream)
