"""Where audit lines go: a stream (stdout), a file rotated and kept by age, or nowhere."""

from __future__ import annotations

import contextlib
import gzip
import os
import select
import shutil
import sys
import time
from pathlib import Path
from typing import BinaryIO, Protocol

DAY = 86400.0


class Sink(Protocol):
    """Writes whole batches of lines; raises OSError when it cannot."""

    def write(self, data: bytes) -> None:
        """Write (and flush) complete lines."""

    def tick(self, now: float) -> None:
        """Periodic housekeeping (rotation, retention)."""

    def close(self) -> None:
        """Release the file or stream."""


class StreamSink:
    """Lines to a binary stream (stdout by default): the cluster's log collection keeps them.

    Several workers share one stdout pipe, and only writes of at most PIPE_BUF bytes are atomic
    on a pipe: lines go out in writes of whole lines of at most that size, so no worker's line is
    ever cut by another's (a single line longer than that is written alone).
    """

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.stream = stream

    def _target(self) -> BinaryIO:
        # stdout is looked up per batch: it may be replaced while the process runs (tests do).
        if self.stream is not None:
            return self.stream
        out: BinaryIO = sys.stdout.buffer
        return out

    def write(self, data: bytes) -> None:
        """Write the batch in atomic pieces of whole lines, then flush."""
        stream = self._target()
        stream.flush()  # anything buffered earlier goes first
        for piece in pieces(data):
            try:
                fd = stream.fileno()
            except (OSError, ValueError, AttributeError):
                stream.write(piece)
                stream.flush()
                continue
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]

    def tick(self, now: float) -> None:
        """Nothing to rotate."""

    def close(self) -> None:
        """stdout stays open."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self._target().flush()


def pieces(data: bytes, limit: int = select.PIPE_BUF) -> list[bytes]:
    """Whole lines grouped into chunks of at most `limit` bytes (a longer line is its own chunk)."""
    out: list[bytes] = []
    current = bytearray()
    for line in data.splitlines(keepends=True):
        if current and len(current) + len(line) > limit:
            out.append(bytes(current))
            current.clear()
        current += line
    if current:
        out.append(bytes(current))
    return out


class FileSink:
    """An append-only file, rotated at UTC midnight (or past `max_bytes`) into gzip files that are
    deleted once older than `retention` seconds: evidence is kept by age, never by count, so a
    flood of events cannot push last week's lines out."""

    def __init__(
        self, path: Path, *, retention: float = 90 * DAY, max_bytes: int = 256 * 1024 * 1024
    ) -> None:
        self.path = Path(path)
        self.retention = retention
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = None
        self._day = self._utc_day(time.time())
        self._size = 0
        self._last_sweep = 0.0

    @staticmethod
    def _utc_day(now: float) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(now))

    def _open(self) -> BinaryIO:
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
            self._size = self._file.tell()
        return self._file

    def write(self, data: bytes) -> None:
        """Append and flush; rotate first when the day changed or the file is full."""
        now = time.time()
        if self._utc_day(now) != self._day or self._size + len(data) > self.max_bytes:
            self.rotate(now)
        f = self._open()
        f.write(data)
        f.flush()
        self._size += len(data)

    def rotate(self, now: float) -> Path | None:
        """Close the current file and compress it to `<name>.<UTC time>.gz`; the rotated path."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._day = self._utc_day(now)
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        target = self.path.with_name(f"{self.path.name}.{stamp}.gz")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.{stamp}-{n}.gz")
            n += 1
        staging = self.path.with_name(f"{self.path.name}.rotating")
        os.replace(self.path, staging)
        with open(staging, "rb") as src, gzip.open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        staging.unlink()
        return target

    def tick(self, now: float) -> None:
        """Rotate at midnight even when idle; delete rotated files past the retention (hourly)."""
        if self._utc_day(now) != self._day:
            self.rotate(now)
        if now - self._last_sweep >= 3600:
            self._last_sweep = now
            self.sweep(now)

    def sweep(self, now: float) -> list[Path]:
        """Delete rotated files whose last write is older than the retention."""
        removed = []
        for old in self.path.parent.glob(f"{self.path.name}.*.gz"):
            if now - old.stat().st_mtime > self.retention:
                old.unlink(missing_ok=True)
                removed.append(old)
        return removed

    def close(self) -> None:
        """Close the current file (what a full disk kept buffered is lost, as already counted)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
