"""Files the proxy re-reads while running: TLS material and `*_FILE` secrets.

A mounted Kubernetes Secret is updated by swapping its `..data` symlink, so a file is seen as
changed when the mtime or inode behind its path changes; each watch looks at most once per
`PROXY_CERT_RELOAD_INTERVAL` (docs/operations.md#rotating-certificates-and-secrets).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from proxy import logs

log = structlog.get_logger(__name__)

Stamp = tuple[tuple[str, float, int], ...]


def file_stamp(paths: Iterable[Path | None]) -> Stamp:
    """A fingerprint of the files, changing when any of them is replaced."""
    stamp: list[tuple[str, float, int]] = []
    for path in paths:
        if path is None:
            continue
        try:
            st = path.stat()  # follows symlinks: Kubernetes swaps a ..data symlink
            stamp.append((str(path), st.st_mtime, st.st_ino))
        except OSError:
            stamp.append((str(path), -1.0, -1))
    return tuple(stamp)


class FileWatch:
    """Tells, at most once per interval, whether watched files changed since the accepted stamp."""

    def __init__(
        self, paths: Iterable[Path | None], interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Watch `paths` (None entries ignored), starting from their current stamp."""
        self.paths = tuple(p for p in paths if p is not None)
        self._interval = interval
        self._clock = clock
        self._stamp = file_stamp(self.paths)
        self._checked = clock()

    def changed(self) -> Stamp | None:
        """The new stamp when the interval has passed and a file changed; else None.

        The caller `accept`s it once it has used the new files; until then a later call
        reports the change again (a half-written or unreadable file is retried)."""
        now = self._clock()
        if now - self._checked < self._interval:
            return None
        self._checked = now
        stamp = file_stamp(self.paths)
        return stamp if stamp != self._stamp else None

    def accept(self, stamp: Stamp) -> None:
        """Record `stamp` as the files now in use."""
        self._stamp = stamp


def read_secret(path: Path) -> str:
    """A secret file's content without the trailing newline editors and `kubectl` add."""
    return path.read_text(encoding="utf-8").strip()


class Secret:
    """A secret's current value: a literal, or a file re-read when it changes (never logged)."""

    def __init__(
        self,
        value: str | None,
        path: Path | None = None,
        *,
        interval: float = 30.0,
        name: str = "secret",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`value` as configured; with `path`, the file's content replaces it now and on change."""
        self.name = name
        self.path = path
        self._value = value
        self._failing = False
        self._watch = FileWatch((path,), interval, clock) if path is not None else None
        if path is not None:
            # Read now, not only at the first change: the file may differ from what the
            # configuration load saw, and a hub's own secret file is read only here.
            self._reload(file_stamp((path,)))
        logs.register_secrets([self._value])

    def get(self) -> str | None:
        """The current value (the last one read successfully)."""
        if self._watch is not None:
            stamp = self._watch.changed()
            if stamp is not None:
                self._reload(stamp)
        return self._value

    def _reload(self, stamp: Stamp) -> None:
        """Read the file; on failure keep the last good value and log once until it reads again."""
        assert self.path is not None and self._watch is not None
        try:
            value = read_secret(self.path)
            if not value:
                raise ValueError("the file is empty")
        except OSError as exc:
            self._failed(exc.strerror or type(exc).__name__)
            return
        except UnicodeError:
            self._failed("not UTF-8 text")  # the decode message would quote secret bytes
            return
        except ValueError as exc:
            self._failed(str(exc))
            return
        self._watch.accept(stamp)
        self._failing = False
        if value != self._value:
            changed = self._value is not None
            self._value = value
            logs.register_secrets([value])
            if changed:
                log.info("secret_reloaded", secret=self.name, path=str(self.path))

    def _failed(self, reason: str) -> None:
        """Log a read failure once (it is retried every interval, silently)."""
        if not self._failing:
            self._failing = True
            log.error("secret_file_unreadable", secret=self.name, path=str(self.path), error=reason)


__all__ = ["FileWatch", "Secret", "Stamp", "file_stamp", "read_secret"]
