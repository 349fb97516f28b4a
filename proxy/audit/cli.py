"""`prom-keycloak-proxy audit who | subject | refusals | events`: access reviews from audit files."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from proxy.audit.event import Reach
from proxy.audit.query import FORWARDED, Row, Window, accessed_by, refusals, subject_matches, who_accessed
from proxy.audit.reader import read_events
from proxy.durations import parse_duration

HEADERS = {
    "who": ("hub", "subject", "via"),
    "subject": ("hub", "subject", "scope"),
    "refusals": ("hub", "subject", "decision", "status"),
}


def parse_time(text: str, now: float | None = None) -> str:
    """An RFC 3339 UTC string from a date, a date-time (UTC unless it says otherwise) or `7d` (ago)."""
    text = text.strip()
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = None
    if seconds is not None and not text.replace(".", "").isdigit():
        moment = datetime.fromtimestamp((now if now is not None else time.time()) - seconds, UTC)
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parser() -> argparse.ArgumentParser:
    """The `audit` command line."""
    p = argparse.ArgumentParser(
        prog="prom-keycloak-proxy audit",
        description="Answer access-review questions from audit files (plain, rotated, gzip, or "
        "collector-wrapped), by the recorded reach of each forwarded request.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("files", nargs="+", type=Path, help="audit files or directories")
        sp.add_argument("--since", help="from (inclusive): date, date-time (UTC default) or e.g. 7d")
        sp.add_argument("--until", help="to (exclusive): date, date-time or e.g. 1h")
        sp.add_argument("--format", choices=("table", "json", "csv"), default="table")

    w = sub.add_parser("who", help="who accessed a hub, cluster or project (wider reach counts)")
    w.add_argument("--hub", help="hub name (default: every hub)")
    w.add_argument("--cluster")
    w.add_argument("--project", help="project (namespace); needs --cluster")
    common(w)
    s = sub.add_parser("subject", help="everything one subject (sub, client id or username) accessed")
    s.add_argument("subject")
    common(s)
    r = sub.add_parser("refusals", help="refused requests per subject")
    r.add_argument("--subject")
    common(r)
    e = sub.add_parser("events", help="the matching events themselves, one JSON line each")
    e.add_argument("--subject")
    e.add_argument("--hub")
    e.add_argument("--cluster")
    e.add_argument("--project")
    common(e)
    return p


def main(argv: Sequence[str], out: TextIO | None = None) -> int:
    """Run one `audit` query; 0 answered, 2 usage error."""
    out = out or sys.stdout
    args = parser().parse_args(list(argv))
    if getattr(args, "project", None) and not args.cluster:
        print("--project needs --cluster", file=sys.stderr)
        return 2
    try:
        window = Window(
            parse_time(args.since) if args.since else None, parse_time(args.until) if args.until else None
        )
    except ValueError as exc:
        print(f"invalid time: {exc}", file=sys.stderr)
        return 2
    missing = [str(f) for f in args.files if not f.exists()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    events = read_events(args.files)
    if args.command == "events":
        _events(events, args, window, out)
        return 0
    if args.command == "who":
        rows = who_accessed(events, hub=args.hub, cluster=args.cluster, project=args.project, window=window)
    elif args.command == "subject":
        rows = accessed_by(events, args.subject, window=window)
    else:
        rows = refusals(events, subject=args.subject, window=window)
    render(rows, HEADERS[args.command], args.format, out)
    return 0


def _events(events: Iterable[dict[str, Any]], args: argparse.Namespace, window: Window, out: TextIO) -> None:
    for event in events:
        if not window.holds(str(event.get("time") or "")):
            continue
        if args.subject and not subject_matches(event, args.subject):
            continue
        if args.hub and event.get("hub") != args.hub:
            continue
        if args.cluster and (
            event.get("decision") not in FORWARDED
            or not Reach.from_json(event.get("reach")).touches(args.cluster, args.project)
        ):
            continue
        out.write(json.dumps(event, separators=(",", ":")) + "\n")


def render(rows: list[Row], headers: tuple[str, ...], fmt: str, out: TextIO) -> None:
    """Rows as an aligned table, a JSON array or CSV."""
    sample_names = sorted({n for r in rows for n in r.samples})
    columns = [*headers, "count", "first", "last", *sample_names]
    records = [
        [*r.key, str(r.count), r.first, r.last, *("; ".join(r.samples.get(n, [])) for n in sample_names)]
        for r in rows
    ]
    if fmt == "json":
        out.write(json.dumps([dict(zip(columns, rec, strict=True)) for rec in records], indent=1) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(records)
        return
    if not records:
        out.write("no matching events\n")
        return
    widths = [max(len(c), *(len(rec[i]) for rec in records)) for i, c in enumerate(columns)]
    for line in [columns, *records]:
        out.write("  ".join(v.ljust(widths[i]) for i, v in enumerate(line)).rstrip() + "\n")
