"""Session-wide check that no log line (nor audit event) the proxy writes carries token material.

Register in `tests/conftest.py` (`pytest_plugins = [..., "tests.support.logscan"]`). At session
start it configures the proxy's real logging pipeline (JSON, redaction, debug for the proxy's own
loggers) and taps its sink; every line written in-process is scanned. Lines of proxies run as
subprocesses are scanned when a test hands them over with `LOG_SCAN.feed_file(path)`. A test during
which an offending line appeared fails in its teardown; the session fails on anything left over.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from proxy import logs
from proxy.audit import writer as audit_writer
from tests.support.stack import POLICY

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_AUTH = re.compile(r"(?i)\b(?:bearer|basic)\s+(?!\[redacted\])[A-Za-z0-9._~+/=-]{8,}")
_HEADER_FIELD = re.compile(
    r'(?i)"(?:authorization|proxy-authorization|cookie|set-cookie|x-id-token|client_secret|password)"'
    r'\s*:\s*(?!"\[redacted\]")[^,}\s]'
)


def _demo_secrets() -> list[str]:
    """Every secret of `demo/proxy_demo/demo.yaml`, raw and as a Basic credential."""
    pairs = [(c["client_id"], c["secret"]) for c in POLICY["clients"] if c.get("secret")]
    pairs.append((POLICY["resource_server"]["client_id"], POLICY["resource_server"]["secret"]))
    pairs += [(u["username"], u["password"]) for u in POLICY["users"]]
    out: list[str] = []
    for name, secret in pairs:
        out.append(secret)
        out.append(base64.b64encode(f"{name}:{secret}".encode()).decode())
    return out


@dataclass
class LogScan:
    """Counts scanned lines and keeps the offending ones."""

    secrets: list[str] = field(default_factory=_demo_secrets)
    lines: int = 0
    offences: list[str] = field(default_factory=list)

    def why(self, line: str) -> str | None:
        """The reason a line leaks, or None when it is clean."""
        for pattern, reason in ((_JWT, "JWT"), (_AUTH, "credential"), (_HEADER_FIELD, "header field")):
            if pattern.search(line):
                return reason
        for secret in self.secrets:
            if secret in line:
                return "demo secret"
        return None

    def feed(self, text: str, source: str = "in-process") -> None:
        """Scan rendered log text (one or more lines)."""
        for line in text.splitlines():
            if not line.strip():
                continue
            self.lines += 1
            reason = self.why(line)
            if reason is not None:
                self.offences.append(f"[{source}] {reason}: {line[:400]}")

    def feed_file(self, path: Path) -> None:
        """Scan the log file of a proxy that ran as a subprocess."""
        self.feed(path.read_text(encoding="utf-8", errors="replace"), source=path.name)


LOG_SCAN = LogScan()


@pytest.fixture(scope="session", autouse=True)
def log_scan() -> Iterator[LogScan]:
    """Route the proxy's logging through its real pipeline for the session and scan every line."""
    logs.configure("debug", "json")
    # The proxy's own loggers at debug; third-party libraries (urllib3, asyncio) stay at info.
    logging.getLogger().setLevel(logging.INFO)
    remove = logs.add_tap(LOG_SCAN.feed)
    # The audit stream is scanned like the log: an event must never carry token material either.
    remove_audit = audit_writer.add_tap(lambda text: LOG_SCAN.feed(text, source="audit"))
    yield LOG_SCAN
    remove_audit()
    remove()
    if LOG_SCAN.offences:
        pytest.fail("token material in logs:\n" + "\n".join(LOG_SCAN.offences[:20]), pytrace=False)


@pytest.fixture(autouse=True)
def log_scan_per_test(log_scan: LogScan) -> Iterator[None]:
    """Fail the test during which a leaking log line was written."""
    before = len(log_scan.offences)
    yield
    new = log_scan.offences[before:]
    if new:
        del log_scan.offences[before:]
        pytest.fail("token material in logs:\n" + "\n".join(new[:20]), pytrace=False)
