"""Child-process probe: parse one query under a memory cap and report time and peak RSS.

Run as `python promql_probe.py CAP_BYTES` with the query on stdin; prints a JSON report.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> None:
    """Cap the address space, guard+parse stdin's query, print {outcome, seconds, rss}."""
    cap = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    from proxy.promql.errors import PromQLError
    from proxy.promql.limits import Limits
    from proxy.promql.parse import parse

    query = sys.stdin.read()
    raw = len(sys.argv) > 2 and sys.argv[2] == "raw"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        if raw:
            import promql_parser

            promql_parser.parse(query)
        else:
            parse(query, Limits())
        outcome = "parsed"
    except PromQLError as exc:
        outcome = type(exc).__name__
    except Exception as exc:
        outcome = "error:" + type(exc).__name__
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump({"outcome": outcome, "seconds": seconds, "rss_kib": peak, "base_kib": before}, sys.stdout)


if __name__ == "__main__":
    main()
