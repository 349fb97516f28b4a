"""Audit trail: one event per decision on a dedicated stream, and the reader behind `audit`."""

from __future__ import annotations

from proxy.audit.event import AuditEvent, Reach
from proxy.audit.setup import open_writer
from proxy.audit.writer import AuditWriter

__all__ = ["AuditEvent", "AuditWriter", "Reach", "open_writer"]
