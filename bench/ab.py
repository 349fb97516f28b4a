"""A/B of two proxy source trees on a busy machine: both run at once, short wrk runs interleaved.

`python bench/ab.py BASE_TREE PATCHED_TREE [--shape panel] [--conc 16] [--rounds 6]`
(each tree holds a `proxy/` package; the installed console script runs it via PYTHONPATH).
Interleaving makes both see the same background load; medians of req/s and CPU s per 1,000
requests are printed. The aiohttp pass-through runs in the same rotation as a reference.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import run as bench
from proxy_demo.certs import Pki
from proxy_demo.dataset import build_dataset
from proxy_demo.prometheus import PrometheusServer, free_port


def main() -> int:
    """Start Prometheus, the emulator, the pass-through and both proxies; print medians."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("trees", nargs=2, type=Path)
    p.add_argument("--shape", default="panel")
    p.add_argument("--conc", type=int, default=16)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=int, default=2)
    args = p.parse_args()
    shape = next(s for s in bench.SHAPES if s.name == args.shape)
    workdir = Path(tempfile.mkdtemp(prefix="prom-keycloak-proxy-ab-"))
    with contextlib.ExitStack() as stack:
        prom = PrometheusServer(workdir / "prom", Pki(workdir / "pki"), build_dataset(), rules=None)
        prom.start()
        stack.callback(prom.stop)
        kc_port = free_port()
        kc_url = f"http://127.0.0.1:{kc_port}"
        stack.enter_context(
            bench.started(
                [str(bench.EMULATOR_BIN), str(bench.POLICY), "--port", str(kc_port)],
                f"{kc_url}/realms/{bench.REALM}/.well-known/openid-configuration",
                workdir / "kc.log",
            )
        )
        token = bench.Keycloak(kc_url).token()
        targets: dict[str, tuple[str, bench.Target]] = {}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = stack.enter_context(
            bench.started(
                bench.passthrough_command(port, prom),
                f"{url}/-/ready",
                workdir / "pt.log",
            )
        )
        targets["aiohttp-pt"] = (url, bench.Target("pt", url, bench.process_tree(proc.pid)))
        for i, tree in enumerate(args.trees):
            port, mport = free_port(), free_port()
            env = bench.proxy_env(prom, kc_url, port, mport, PYTHONPATH=str(tree.resolve()))
            proc = stack.enter_context(
                bench.started(
                    [str(bench.PROXY_BIN), "serve"],
                    f"http://127.0.0.1:{mport}/readyz",
                    workdir / f"p{i}.log",
                    env,
                )
            )
            url = f"http://127.0.0.1:{port}"
            targets[f"{'AB'[i]}:{tree}"] = (url, bench.Target(str(i), url, bench.process_tree(proc.pid)))
        body = bench.write_body(workdir, shape)
        auth = {"BENCH_TOKEN": token}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for url, _ in targets.values():
            bench.check_answers(url, shape, token)
            bench.wrk(url, shape, body, 4, 1, auth)
        for _ in range(args.rounds):
            for name, (url, target) in targets.items():
                before = bench.cpu_seconds(target.procs())
                res = bench.wrk(url, shape, body, args.conc, args.seconds, auth)
                cpu = bench.cpu_seconds(target.procs()) - before
                n = res["requests"]
                results[name].append((n / (res["duration_us"] / 1e6), 1000 * cpu / max(1, n)))
        print(f"shape {shape.name}, c={args.conc}, {args.rounds} interleaved rounds of {args.seconds} s")
        for name, rows in results.items():
            rps = statistics.median(r for r, _ in rows)
            cpu = statistics.median(c for _, c in rows)
            print(
                f"  {name:40} median {rps:7.0f} req/s   {cpu:6.3f} CPU s/1k"
                f"   (req/s {min(r for r, _ in rows):.0f}–{max(r for r, _ in rows):.0f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
