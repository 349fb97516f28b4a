"""`prom-keycloak-proxy serve` under cProfile with the process CPU clock (preemption not counted).

`python bench/cprofile_proxy.py OUT.prof` with the usual `PROXY_*` environment; stats are written
when the proxy stops on SIGTERM. bench/run.py --cprofile uses it: on a busy machine wall-clock
samplers (py-spy) charge the time a process waits for a core to the syscall that woke the load
generator, so CPU attribution needs a CPU clock.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time

from proxy.cli import main


def run(out: str) -> int:
    """Serve (one worker); SIGUSR1 starts the profiler (after warm-up); stats dumped on exit."""
    profiler = cProfile.Profile(time.process_time)
    signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
    try:
        return main(["serve"])
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
