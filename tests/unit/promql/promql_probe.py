"""Child-process probe: parse one query under a memory cap and report CPU time and peak RSS.

Run as `python promql_probe.py CAP_BYTES [raw] [REPS]` with the query on stdin; prints a JSON
report. `seconds` is the minimum CPU time (user + system, `time.process_time`) of REPS cold
parses (caches cleared before each), so other load on the machine cannot inflate it: a busy
machine delays the child but does not make its parse cost more CPU. `rss_kib` is the peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_rss_kib() -> int:
    """This process's own peak RSS. `ru_maxrss` is not used: Linux carries it across exec, so a
    child of a large pytest worker would report the worker's size; VmHWM belongs to this image."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> None:
    """Cap the address space, guard+parse stdin's query, print {outcome, seconds, rss}."""
    cap = int(sys.argv[1])
    raw = len(sys.argv) > 2 and sys.argv[2] == "raw"
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    import promql_parser

    from proxy.promql.errors import PromQLError
    from proxy.promql.limits import Limits
    from proxy.promql.parse import _parse_checked, parse

    query = sys.stdin.read()
    before = peak_rss_kib()
    best = float("inf")
    outcome = "parsed"
    for _ in range(max(1, reps)):
        _parse_checked.cache_clear()
        start = time.process_time()
        try:
            if raw:
                promql_parser.parse(query)
            else:
                parse(query, Limits())
            outcome = "parsed"
        except PromQLError as exc:
            outcome = type(exc).__name__
        except Exception as exc:
            outcome = "error:" + type(exc).__name__
        best = min(best, time.process_time() - start)
    peak = peak_rss_kib()
    report = {"outcome": outcome, "seconds": best, "rss_kib": peak, "base_kib": before}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
