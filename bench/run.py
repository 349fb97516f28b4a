"""`make bench`: the proxy against direct Prometheus, nginx and a bare aiohttp pass-through.

Starts, on loopback: the real Prometheus with the demo data (mTLS, as the proxy's upstream), a
second Prometheus over a copy of the same blocks without TLS (the "direct" baseline: wrk cannot
present a client certificate), the Keycloak emulator in its own process, and then one target
after another as a separate process — nginx (Debian `nginx-light`, doing the mTLS), the uvloop
aiohttp pass-through of `bench/passthrough.py`, and the proxy (`prom-keycloak-proxy serve`) in
several configurations. Load comes from `wrk` with `bench/load.lua` (POST form bodies, bearer
token). Prints one table: requests/s, p50/p99, ratios against the pass-through and direct,
Keycloak calls and proxy CPU seconds per 1,000 requests, peak RSS; then the issue's targets.
Last, the dashboard replay of `bench/dashboard.py` (20 users × 20 panels, direct and through the
results cache; its own data and Prometheus): `--only dashboard` (`make bench BENCH=dashboard`) runs
it alone.

Not a timed test: numbers depend on the machine and on whatever else runs on it.
`python bench/run.py --help` lists the knobs (`--duration`, `--profile`, `--only`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import dashboard, large_realm  # noqa: E402
from bench.fairness import report as fairness_report  # noqa: E402
from proxy.hubs import TOP_LEVEL_HUB_OPTIONS  # noqa: E402
from proxy_demo.certs import Pki  # noqa: E402
from proxy_demo.dataset import build_dataset  # noqa: E402
from proxy_demo.policy import DEMO_POLICY  # noqa: E402
from proxy_demo.prometheus import PrometheusServer, ensure_prometheus, free_port  # noqa: E402

BENCH = ROOT / "bench"
LUA = BENCH / "load.lua"
VENV_BIN = Path(sys.executable).parent
PROXY_BIN = VENV_BIN / "prom-keycloak-proxy"
EMULATOR_BIN = VENV_BIN / "keycloak-emulator"
POLICY = DEMO_POLICY
REALM = "nerc"
USER, CLIENT = "alice", "grafana"  # alice holds PROJECT team-a on nerc-ocp-prod only
CLUSTER, NAMESPACE = "nerc-ocp-prod", "team-a"
CONCURRENCY = (1, 16, 64)
KC_CALLS = re.compile(r"^(token\.|introspect|resource_set|userinfo|jwks|discovery)")


# ----------------------------------------------------------------------------- query shapes


def dashboard_query(size: int = 4096) -> str:
    """A generated Grafana-style query of about `size` bytes: `$pod` = All, expanded by Grafana."""
    pods = ["llama-serve-7d9f8-x2k4p", "train-job-0-master-0"]
    i = 0
    while True:
        pods.append(f"workload-{i:03d}-{'abcdefgh'[i % 8]}{i * 7919 % 100000:05d}")
        alternation = "|".join(pods)
        sel = f'{{cluster="{CLUSTER}",exported_namespace="{NAMESPACE}",exported_pod=~"{alternation}"}}'
        text = (
            f"sum by (exported_namespace, Hostname) (avg_over_time(DCGM_FI_DEV_GPU_UTIL{sel}[5m]))"
            f" / on (exported_namespace, Hostname) group_left"
            f" sum by (exported_namespace, Hostname) (avg_over_time(DCGM_FI_DEV_FB_USED{sel}[5m]))"
        )
        if len(text) >= size:
            return text
        i += 1


PANEL = (
    "sum by (exported_namespace) "
    f'(DCGM_FI_DEV_GPU_UTIL{{cluster="{CLUSTER}",exported_namespace="{NAMESPACE}"}})'
)


FANOUT = "DCGM_FI_DEV_GPU_UTIL[5m]"
RANGE1 = f'DCGM_FI_DEV_GPU_UTIL{{cluster="{CLUSTER}",exported_namespace="{NAMESPACE}"}}[5m]'


@dataclass(frozen=True)
class Shape:
    """One request shape: API path and form body (built when the run starts)."""

    name: str
    path: str
    form: Callable[[float], list[tuple[str, str]]]


SHAPES = (
    Shape("panel", "/api/v1/query", lambda now: [("query", PANEL), ("time", f"{now:.3f}")]),
    Shape(
        "range6h",
        "/api/v1/query_range",
        lambda now: [
            ("query", PANEL),
            ("start", f"{now - 3 * 3600:.0f}"),
            ("end", f"{now + 3 * 3600:.0f}"),
            ("step", "30"),
        ],
    ),
    Shape("dash4k", "/api/v1/query", lambda now: [("query", dashboard_query()), ("time", f"{now:.3f}")]),
    # what prometheus-api-client's get_metric_range_data sends: a top-level range selector. For
    # alice (one project, two project labels) the proxy fans it out to two upstream queries and
    # merges the matrices; range1 is the same series named explicitly (one upstream query).
    Shape("fanout2", "/api/v1/query", lambda now: [("query", FANOUT), ("time", f"{now:.3f}")]),
    Shape("range1", "/api/v1/query", lambda now: [("query", RANGE1), ("time", f"{now:.3f}")]),
)


# ----------------------------------------------------------------------------- processes


def log(msg: str) -> None:
    """Progress on stderr, so stdout holds only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_tools() -> None:
    """Install `wrk`, `nginx-light` and `memcached` with apt-get when missing (as root)."""
    tools = (("wrk", "wrk"), ("nginx", "nginx-light"), ("memcached", "memcached"))
    missing = [pkg for tool, pkg in tools if not _which(tool)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"bench needs {', '.join(missing)}: apt-get install -y {' '.join(missing)}")
    log(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(cmd, env=env, capture_output=True, check=True)
    # the packages may start a system nginx on :80 and memcached on :11211; the bench uses neither
    for service in ("nginx", "memcached"):
        subprocess.run(["systemctl", "stop", service], capture_output=True, check=False)


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / tool).is_file()), None
    )


def urlopen(req: str | urllib.request.Request, timeout: float) -> Any:
    """`urllib.request.urlopen` for the bench's own loopback http:// services only."""
    url = req if isinstance(req, str) else req.full_url
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"not a loopback http URL: {url}")
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - checked above


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 200; fail early when `proc` died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def started(
    cmd: Sequence[str], ready_url: str, logfile: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` until the block ends, once `ready_url` answers."""
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        try:
            wait_http(ready_url, proc=proc)
            yield proc
        finally:
            stop_process(proc)


@contextlib.contextmanager
def plain_prometheus(tls: PrometheusServer, workdir: Path) -> Iterator[str]:
    """A second Prometheus over a copy of the backfilled blocks, plain HTTP: the direct baseline."""
    data = workdir / "data"
    data.mkdir(parents=True)
    for block in tls.data_dir.iterdir():
        if re.fullmatch(r"[0-9A-Z]{26}", block.name):
            shutil.copytree(block, data / block.name)
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 30s\nscrape_configs: []\n")
    port = free_port()
    binary = ensure_prometheus().prometheus
    cmd = [
        str(binary),
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=30d",
        "--log.level=warn",
    ]
    base = f"http://127.0.0.1:{port}"
    with started(cmd, f"{base}/-/ready", workdir / "prometheus.log"):
        yield base


# ----------------------------------------------------------------------------- targets


@dataclass
class Target:
    """A server under load: its URL and the processes whose CPU and memory count."""

    name: str
    base_url: str
    procs: Callable[[], list[psutil.Process]]
    note: str = ""
    # Prepended to every shape's path (a hub's `/<hub>` prefix).
    path_prefix: str = ""


def process_tree(pid: int) -> Callable[[], list[psutil.Process]]:
    """The process and all its descendants, looked up afresh on each call."""

    def tree() -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    return tree


def cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds of the processes."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def peak_rss_mb(procs: Sequence[psutil.Process]) -> float:
    """Sum of the processes' peak resident sets (VmHWM), in MiB."""
    total = 0
    for p in procs:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def nginx_conf(workdir: Path, port: int, upstream: str, prom: PrometheusServer) -> Path:
    """nginx: keep-alive pool to Prometheus over mTLS, no logging, 2 workers."""
    host_port = upstream.removeprefix("https://")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 2;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/client_body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
  upstream prometheus {{ server {host_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} backlog=1024;
    location / {{
      proxy_pass https://prometheus;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate {prom.client_cert};
      proxy_ssl_certificate_key {prom.client_key};
      proxy_ssl_trusted_certificate {prom.ca};
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }}
    location = /nginx-ready {{ return 200 "ok"; }}
  }}
}}
"""
    )
    return conf


def hubs_env(
    env: dict[str, str], prom: PrometheusServer, hubs: Sequence[str], config: Path
) -> dict[str, str]:
    """`env` with its single upstream replaced by a YAML `hubs:` list (every hub: `prom`)."""
    entries = "".join(
        f"  - name: {hub}\n    prometheus_base_url: {prom.base_url}\n    prometheus_ca_cert: {prom.ca}\n"
        f"    prometheus_tls_cert: {prom.client_cert}\n    prometheus_tls_key: {prom.client_key}\n"
        for hub in hubs
    )
    config.write_text(f"default_hub: {hubs[0]}\nhubs:\n{entries}", encoding="utf-8")
    hub_options = {"PROXY_" + name.upper() for name in TOP_LEVEL_HUB_OPTIONS}
    out = {k: v for k, v in env.items() if k not in hub_options}
    out["PROXY_CONFIG"] = str(config)
    return out


def proxy_env(prom: PrometheusServer, kc_url: str, port: int, mport: int, **extra: str) -> dict[str, str]:
    """Environment of `prom-keycloak-proxy serve` for the bench (fair-use limits raised)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    env.update(
        {
            "PROXY_LISTEN": f"127.0.0.1:{port}",
            "PROXY_METRICS_LISTEN": f"127.0.0.1:{mport}",
            "PROXY_PROMETHEUS_BASE_URL": prom.base_url,
            "PROXY_PROMETHEUS_CA_CERT": str(prom.ca),
            "PROXY_PROMETHEUS_TLS_CERT": str(prom.client_cert),
            "PROXY_PROMETHEUS_TLS_KEY": str(prom.client_key),
            "PROXY_AUTH_BASE_URL": kc_url,
            "PROXY_AUTH_REALM": REALM,
            "PROXY_AUTH_CLIENT_ID": "prom-keycloak-proxy",
            "PROXY_AUTH_CLIENT_SECRET": "prom-keycloak-proxy-secret",
            "PROXY_ACM_HUB": "moc",
            # one token for every request: the fair-use caps would measure the scheduler, not the path
            "PROXY_MAX_UPSTREAM_CONCURRENCY": "10000",
            "PROXY_MAX_CONCURRENT_PER_SUBJECT": "10000",
            "PROXY_SHUTDOWN_TIMEOUT": "1s",
            "PROXY_LOG_LEVEL": "info",  # the production default: one JSON line per request
        }
    )
    env.update(extra)
    return env


def pin_workers(procs: list[psutil.Process]) -> str:
    """Pin each serving process to its own core (`taskset -pc`); describe the pinning."""
    workers = [p for p in procs if any("spawn_main" in part for part in _cmdline(p))]
    cpus = sorted(os.sched_getaffinity(0))
    pinned = []
    for i, p in enumerate(workers):
        cpu = cpus[i % len(cpus)]
        subprocess.run(["taskset", "-pc", str(cpu), str(p.pid)], capture_output=True, check=True)
        pinned.append(f"pid {p.pid}→cpu{cpu}")
    return "taskset " + ", ".join(pinned)


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


# ----------------------------------------------------------------------------- Keycloak


class Keycloak:
    """The emulator process's HTTP controls: tokens, call counters."""

    def __init__(self, base_url: str) -> None:
        """`base_url` of the emulator."""
        self.base_url = base_url

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(  # noqa: S310 - loopback http, checked by urlopen()
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def token(self, user: str = USER) -> str:
        """A password-grant token of a demo user (the bench user by default), as Grafana holds it."""
        form = urlencode(
            {"grant_type": "password", "client_id": CLIENT, "username": user, "password": f"{user}-password"}
        ).encode()
        url = f"{self.base_url}/realms/{REALM}/protocol/openid-connect/token"
        request = urllib.request.Request(url, data=form)  # noqa: S310 - loopback http
        with urlopen(request, timeout=10) as r:
            return str(json.loads(r.read())["access_token"])

    def minted(self, count: int, lifetime: int = 1800) -> list[str]:
        """`count` distinct signed tokens of the bench user (the emulator's mint control)."""
        path = f"/_emulator/realms/{REALM}/mint"
        body = {"user": USER, "client": CLIENT, "lifetime": lifetime}
        return [str(self._post(path, body)["access_token"]) for _ in range(count)]

    def reset(self) -> None:
        """Zero the call counters."""
        self._post("/_emulator/reset-stats", {})

    def calls(self) -> dict[str, int]:
        """Back-channel calls per endpoint/grant since the last reset."""
        with urlopen(f"{self.base_url}/_emulator/realms/{REALM}/stats", timeout=10) as r:
            stats: dict[str, int] = json.loads(r.read())
        return {k: v for k, v in stats.items() if KC_CALLS.match(k)}


# ----------------------------------------------------------------------------- load


@dataclass
class Row:
    """One wrk run and what the target spent on it."""

    target: str
    shape: str
    conc: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_per_1k: float
    kc: dict[str, int] = field(default_factory=dict)

    def kc_per_1k(self, key: str | None = None) -> float:
        """Keycloak calls (all, or one kind) per 1,000 requests."""
        n = sum(v for k, v in self.kc.items() if key is None or k == key)
        return 1000.0 * n / max(1, self.requests)


def write_body(workdir: Path, shape: Shape) -> Path:
    """The shape's form body in a file for the Lua script."""
    path = workdir / f"body-{shape.name}.txt"
    path.write_text(urlencode(shape.form(time.time())))
    return path


def wrk(
    url: str, shape: Shape, body: Path, conc: int, seconds: float, auth: dict[str, str]
) -> dict[str, int]:
    """One wrk run; the numbers `load.lua` prints in `done()`."""
    env = {**os.environ, "BENCH_PATH": shape.path, "BENCH_BODY_FILE": str(body), **auth}
    cmd = ["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(LUA), url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            parsed: dict[str, int] = json.loads(line[len("WRKJSON ") :])
            return parsed
    raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")


def check_answers(url: str, shape: Shape, token: str) -> None:
    """One request by hand: the shape must come back 200 with a non-empty result."""
    req = urllib.request.Request(  # noqa: S310 - loopback http, checked by urlopen()
        url + shape.path,
        data=urlencode(shape.form(time.time())).encode(),
        headers={"Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urlopen(req, timeout=30) as r:
            doc = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{url} {shape.name}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    if doc.get("status") != "success" or not doc["data"]["result"]:
        raise RuntimeError(f"{url} {shape.name}: unexpected answer {str(doc)[:300]}")


@dataclass
class Plan:
    """What to run against one target."""

    shapes: Sequence[str]
    concs: Sequence[int]
    extra: Sequence[tuple[str, int]] = ()  # (shape, conc) pairs beyond the grid

    def runs(self) -> list[tuple[str, int]]:
        """Every (shape, concurrency) pair, in order."""
        grid = [(s, c) for s in self.shapes for c in self.concs]
        return grid + [pair for pair in self.extra if pair not in grid]


class Bench:
    """Runs plans against targets and keeps the rows."""

    def __init__(self, workdir: Path, kc: Keycloak, seconds: float, token: str) -> None:
        """`token` is the bench user's bearer token for every warm run."""
        self.workdir = workdir
        self.kc = kc
        self.seconds = seconds
        self.token = token
        self.rows: list[Row] = []
        self.rss: dict[str, float] = {}
        self.notes: dict[str, str] = {}
        self.bodies = {s.name: write_body(workdir, s) for s in SHAPES}

    def measure(self, target: Target, plan: Plan, tokens: list[Path] | None = None) -> None:
        """Warm up, then one wrk run per (shape, concurrency); `tokens`: a fresh token file per run."""
        shapes = {s.name: dataclasses.replace(s, path=target.path_prefix + s.path) for s in SHAPES}
        for name in dict.fromkeys(s for s, _ in plan.runs()):
            check_answers(target.base_url, shapes[name], self.token)
            wrk(target.base_url, shapes[name], self.bodies[name], 4, 1, {"BENCH_TOKEN": self.token})
        for i, (name, conc) in enumerate(plan.runs()):
            auth = {"BENCH_TOKEN": self.token}
            if tokens is not None:
                auth = {"BENCH_TOKENS_FILE": str(tokens[i % len(tokens)])}
            self.kc.reset()
            before = cpu_seconds(target.procs())
            res = wrk(target.base_url, shapes[name], self.bodies[name], conc, self.seconds, auth)
            cpu = cpu_seconds(target.procs()) - before
            n = res["requests"]
            errors = sum(res[k] for k in ("connect", "read", "write", "timeout", "status"))
            row = Row(
                target.name,
                name,
                conc,
                rps=n / (res["duration_us"] / 1e6),
                p50_ms=res["p50_us"] / 1000,
                p99_ms=res["p99_us"] / 1000,
                requests=n,
                errors=errors,
                cpu_per_1k=1000 * cpu / max(1, n),
                kc=self.kc.calls(),
            )
            self.rows.append(row)
            log(
                f"{target.name:18} {name:8} c={conc:<3} {row.rps:8.0f} req/s  p50 {row.p50_ms:6.2f} ms"
                f"  p99 {row.p99_ms:7.2f} ms  errors {errors}"
            )
        self.rss[target.name] = peak_rss_mb(target.procs())
        if target.note:
            self.notes[target.name] = target.note

    def find(self, target: str, shape: str, conc: int) -> Row | None:
        """The row of a run, if it was made."""
        return next((r for r in self.rows if (r.target, r.shape, r.conc) == (target, shape, conc)), None)


# ----------------------------------------------------------------------------- report


DIRECT, NGINX, PASS = "direct", "nginx", "aiohttp-pt"
WARM, COLD, NOCACHE, WORKERS2 = "proxy-warm", "proxy-cold", "proxy-nocache", "proxy-warm-w2"
LARGE = "large-realm"  # bench/large_realm.py: 5,000 project resources, Keycloak with a cost model
DASHBOARD = "dashboard"  # bench/dashboard.py: 20 users × 20 panels, direct vs the results cache
HUBS3 = "proxy-hubs3"
NOAUDIT = "proxy-noaudit"
FAIRNESS = "fairness"
DESCRIPTIONS = {
    DIRECT: "Prometheus itself, plain HTTP (same blocks as the mTLS instance)",
    NGINX: "nginx-light pass-through, 2 workers, keep-alive mTLS upstream",
    PASS: "bench/passthrough.py: uvloop aiohttp, keep-alive mTLS upstream, streams answers",
    WARM: "the proxy, defaults (decisions cached 60 s), 1 worker",
    COLD: "the proxy, PROXY_AUTHZ_CACHE_TTL=0 PROXY_AUTHZ_DENY_CACHE_TTL=0 (UMA per request,"
    " concurrent identical checks single-flight)",
    NOCACHE: "Go-proxy behaviour: TTL 0 + PROXY_AUTH_INTROSPECT=true + a distinct token per"
    " request (JWT verify + introspection + UMA every request)",
    WORKERS2: "the proxy, defaults, PROXY_WORKERS=2",
    NOAUDIT: "the proxy, defaults but PROXY_AUDIT_LOG=off (proxy-warm writes audit events to stdout)",
    HUBS3: "the proxy with a hubs: list of three hubs (each its own upstream session to the same"
    " Prometheus), requests on /moc/api/v1/… (docs: several hubs)",
}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:5.2f}" if a is not None and b else "    -"


def render(bench: Bench) -> str:
    """The side-by-side table and the targets of issue #9."""
    lines = []
    head = (
        f"{'target':15} {'shape':8} {'c':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'+p50 ms':>7} {'×pt':>5} {'×dir':>5} {'KC/1k':>7} {'UMA/1k':>7} {'CPU s/1k':>8} {'err':>4}"
    )
    lines += [head, "-" * len(head)]
    order = {s.name: i for i, s in enumerate(SHAPES)}
    targets = list(dict.fromkeys(r.target for r in bench.rows))
    for shape in sorted({r.shape for r in bench.rows}, key=order.__getitem__):
        for conc in CONCURRENCY:
            direct = bench.find(DIRECT, shape, conc)
            pt = bench.find(PASS, shape, conc)
            for t in targets:
                r = bench.find(t, shape, conc)
                if r is None:
                    continue
                added = f"{r.p50_ms - direct.p50_ms:7.2f}" if direct else "      -"
                kc = f"{r.kc_per_1k():7.1f}" if t.startswith("proxy") else "      -"
                uma = f"{r.kc_per_1k('token.uma'):7.1f}" if t.startswith("proxy") else "      -"
                lines.append(
                    f"{t:15} {shape:8} {conc:>3} {r.rps:8.0f} {r.p50_ms:7.2f} {r.p99_ms:7.2f} "
                    f"{added} {_ratio(r.rps, pt.rps if pt else None)} "
                    f"{_ratio(r.rps, direct.rps if direct else None)} {kc} {uma} "
                    f"{r.cpu_per_1k:8.3f} {r.errors:>4}"
                )
        lines.append("")
    lines.append("peak RSS (sum of the target's processes), pinning, what each target is:")
    for t in targets:
        note = f"  [{bench.notes[t]}]" if t in bench.notes else ""
        lines.append(f"  {t:15} {bench.rss.get(t, 0):7.1f} MiB  {DESCRIPTIONS.get(t, '')}{note}")
    kc_kinds = sorted({k for r in bench.rows for k in r.kc})
    if kc_kinds:
        lines.append("Keycloak calls counted (emulator stats): " + ", ".join(kc_kinds))
    return "\n".join(lines)


def verdicts(bench: Bench, promql_p50: float | None) -> str:
    """Issue #9's targets, each with the numbers it was judged on."""
    out = ["", "targets of issue #9 (same run):"]

    def line(ok: bool | None, text: str) -> None:
        out.append(f"  [{'PASS' if ok else 'FAIL' if ok is not None else 'n/a '}] {text}")

    warm16, pt16 = bench.find(WARM, "panel", 16), bench.find(PASS, "panel", 16)
    if warm16 and pt16:
        ratio = warm16.rps / pt16.rps
        line(
            ratio >= 0.8,
            f"warm proxy ≥ 0.8× pass-through req/s at c=16 (panel): {ratio:.2f}×"
            f" ({warm16.rps:.0f} vs {pt16.rps:.0f})",
        )
    warm1, pt1, d1 = (
        bench.find(WARM, "panel", 1),
        bench.find(PASS, "panel", 1),
        bench.find(DIRECT, "panel", 1),
    )
    if warm1 and pt1 and d1:
        proxy_added, pt_added = warm1.p50_ms - d1.p50_ms, pt1.p50_ms - d1.p50_ms
        line(
            proxy_added <= pt_added + 0.4,
            f"added p50 over direct at c=1: proxy {proxy_added:.2f} ms"
            f" ≤ pass-through {pt_added:.2f} ms + 0.4 ms",
        )
    for conc in CONCURRENCY:
        audited, off = bench.find(WARM, "panel", conc), bench.find(NOAUDIT, "panel", conc)
        if audited and off:
            cost = 1 - audited.rps / off.rps
            line(
                cost < 0.05,
                f"audit stream (stdout) costs < 5 % req/s, panel c={conc}: {cost * 100:+.1f} %"
                f" ({audited.rps:.0f} with vs {off.rps:.0f} without), CPU s/1k"
                f" {audited.cpu_per_1k:.3f} vs {off.cpu_per_1k:.3f}",
            )
    for conc in CONCURRENCY:
        hubs, one = bench.find(HUBS3, "panel", conc), bench.find(WARM, "panel", conc)
        if hubs and one:
            ratio = hubs.rps / one.rps
            line(
                ratio >= 0.95,
                f"three hubs (/moc/api/v1/query) vs one hub (/api/v1/query), panel c={conc}:"
                f" {ratio:.2f}× req/s ({hubs.rps:.0f} vs {one.rps:.0f}), p50 {hubs.p50_ms:.2f} vs"
                f" {one.p50_ms:.2f} ms, CPU s/1k {hubs.cpu_per_1k:.3f} vs {one.cpu_per_1k:.3f}",
            )
    w2 = bench.find(WORKERS2, "panel", 16) or bench.find(WORKERS2, "panel", 64)
    if w2:
        one = bench.find(WARM, "panel", w2.conc)
        if one:
            line(
                w2.rps / one.rps >= 1.3,
                f"PROXY_WORKERS=2 pinned ≥ 1.3× one worker (panel, c={w2.conc}):"
                f" {w2.rps / one.rps:.2f}× ({w2.rps:.0f} vs {one.rps:.0f})",
            )
    warm = [r for r in bench.rows if r.target in (WARM, WORKERS2)]
    if warm:
        worst = max(r.kc_per_1k("token.uma") for r in warm)
        line(worst <= 1, f"Keycloak UMA calls per 1,000 cached requests ≤ 1: worst run {worst:.2f}")
    line(
        None if promql_p50 is None else promql_p50 <= 0.3,
        "PromQL path p50 ≤ 0.3 ms, panel query (bench/promql_bench.py): "
        + ("not run" if promql_p50 is None else f"{promql_p50:.3f} ms"),
    )
    return "\n".join(out)


def promql_bench() -> tuple[float | None, str]:
    """Run bench/promql_bench.py; the cold panel p50 and its first lines."""
    out = subprocess.run(
        [sys.executable, str(BENCH / "promql_bench.py")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    ).stdout
    lines = out.splitlines()
    p50 = None
    for line in lines:
        m = re.match(r"cold sum by \(namespace\).*p50\s+([\d.]+) ms", line)
        if m:
            p50 = float(m.group(1))
    return p50, "\n".join(lines[:2])


# ----------------------------------------------------------------------------- profile


def profile(pid: int, seconds: float, workdir: Path) -> str:
    """py-spy over the proxy process while load runs: top functions by own and total samples."""
    spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    if not Path(spy).exists():
        return "(py-spy not installed: `uv pip install py-spy`)"
    raw = workdir / "profile.txt"
    subprocess.run(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            f"{seconds:.0f}",
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        capture_output=True,
        check=False,
    )
    if not raw.exists():
        return "(py-spy failed; ptrace not permitted?)"
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        samples += count
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            total[f] = total.get(f, 0) + count
    if not samples:
        return "(no samples)"
    top_own = sorted(own.items(), key=lambda kv: -kv[1])[:25]
    top_total = sorted(total.items(), key=lambda kv: -kv[1])[:40]
    lines = [f"py-spy, {samples} samples; own time:"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in top_own]
    lines += ["total time (function and what it calls):"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in top_total]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """`fn (path/to/file.py:12)` → `fn (file.py)`: samples of a function add up across lines."""
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    path = m.group(2)
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group(1)} ({path})"


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Start everything, run the grid, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run (default 3)")
    parser.add_argument("--only", default="", help="comma-separated targets to run (default: all)")
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also profile the warm proxy with py-spy (panel, c=16) for SECONDS",
    )
    parser.add_argument(
        "--cprofile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also run the warm proxy under cProfile (CPU clock), panel c=16, for SECONDS",
    )
    parser.add_argument("--no-promql", action="store_true", help="skip bench/promql_bench.py")
    parser.add_argument(
        "--dashboard-profile",
        action="store_true",
        help="dashboard replay: the proxy with cache=memory under cProfile (CPU clock) for the refreshes",
    )
    parser.add_argument(
        "--dashboard-stagger",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="dashboard replay: users start spread over SECONDS (default 0: together, as the issue asks)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--proxy-env",
        action="append",
        default=[],
        metavar="PROXY_X=V",
        help="an extra setting of the wrk-loaded proxy targets (repeatable), e.g. PROXY_COALESCE=false",
    )
    parser.add_argument("--shapes", default="", help="comma-separated shapes to run (default: all)")
    parser.add_argument(
        "--proxy-src",
        type=Path,
        default=None,
        help="run the proxy from this source tree (PYTHONPATH), e.g. a patched copy",
    )
    args = parser.parse_args(argv)
    only = {t for t in args.only.split(",") if t}
    began = time.monotonic()
    ensure_tools()
    ensure_prometheus()
    workdir = Path(tempfile.mkdtemp(prefix="prom-keycloak-proxy-bench-"))
    load_before = os.getloadavg()
    if only == {DASHBOARD}:  # needs none of the shared services: its own data, Prometheus and realm
        try:
            text = dashboard.run(
                workdir, log, _serve(args.proxy_src), args.dashboard_profile, args.dashboard_stagger
            )
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        print(
            f"\nprom-keycloak-proxy bench — {os.cpu_count()} CPUs, load average before"
            f" {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}\n\n{text}"
        )
        print(f"\nbench took {time.monotonic() - began:.0f} s")
        return 0
    try:
        with contextlib.ExitStack() as stack:
            bench = run_all(stack, workdir, args, only)
        promql_p50, promql_lines = (None, "") if args.no_promql else promql_bench()
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        f"prom-keycloak-proxy bench — {os.cpu_count()} CPUs, wrk -t1, {args.duration:g} s per run,"
        f" load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print("shapes: panel = POST /api/v1/query " + PANEL)
    print(
        "        range6h = the same as query_range, 6 h at step 30 s (721 points);"
        f" dash4k = POST /api/v1/query, {len(dashboard_query())} B generated dashboard query"
    )
    print(
        f"        fanout2 = POST /api/v1/query {FANOUT} (the proxy: two upstream queries for alice,"
        f" merged; others: every series); range1 = {RANGE1} (one upstream query everywhere)"
    )
    print(
        "+p50 = p50 minus direct's p50; ×pt / ×dir = req/s ratio to aiohttp-pt / direct;"
        " KC/1k = Keycloak calls per 1,000 requests (UMA/1k: UMA grants only);"
        " CPU s/1k = CPU seconds of the target's processes per 1,000 requests"
    )
    print()
    print(render(bench))
    print(verdicts(bench, promql_p50))
    if promql_lines:
        print("bench/promql_bench.py, panel query:\n" + promql_lines)
    if bench.fairness_text:
        print("\n" + bench.fairness_text)
    if bench.profile_text:
        print("\nprofile of the warm proxy (panel, c=16):\n" + bench.profile_text)
    if bench.large_realm_text:
        print("\n" + bench.large_realm_text)
    if bench.dashboard_text:
        print("\n" + bench.dashboard_text)
    print(f"\nbench took {time.monotonic() - began:.0f} s")
    return 0


class FullBench(Bench):
    """A bench that also keeps the profile's and the fair-use run's text."""

    profile_text = ""
    large_realm_text = ""
    fairness_text = ""
    dashboard_text = ""


def passthrough_command(port: int, prom: PrometheusServer) -> list[str]:
    """The command line of the bare aiohttp pass-through in front of `prom` (mTLS)."""
    return [
        sys.executable,
        str(BENCH / "passthrough.py"),
        "--port",
        str(port),
        "--upstream",
        prom.base_url,
        "--ca",
        str(prom.ca),
        "--cert",
        str(prom.client_cert),
        "--key",
        str(prom.client_key),
    ]


def run_all(
    stack: contextlib.ExitStack, workdir: Path, args: argparse.Namespace, only: set[str]
) -> FullBench:
    """Start the shared services, then each target in turn, and measure."""
    want: Callable[[str], bool] = lambda name: not only or name in only  # noqa: E731
    log("starting Prometheus (mTLS, backfilled demo data)")
    pki = Pki(workdir / "pki")
    prom = PrometheusServer(workdir / "prometheus", pki, build_dataset(), rules=None)
    prom.start()
    stack.callback(prom.stop)
    direct_url = stack.enter_context(plain_prometheus(prom, workdir / "prometheus-plain"))
    kc_port = free_port()
    kc_url = f"http://127.0.0.1:{kc_port}"
    stack.enter_context(
        started(
            [str(EMULATOR_BIN), str(POLICY), "--port", str(kc_port)],
            f"{kc_url}/realms/{REALM}/.well-known/openid-configuration",
            workdir / "emulator.log",
        )
    )
    kc = Keycloak(kc_url)
    bench = FullBench(workdir, kc, args.duration, kc.token())
    chosen = [s.name for s in SHAPES if not args.shapes or s.name in args.shapes.split(",")]
    full = Plan(chosen, CONCURRENCY)

    if want(DIRECT):
        bench.measure(Target(DIRECT, direct_url, lambda: [p for p in _prometheus_procs(direct_url)]), full)
    if want(NGINX):
        port = free_port()
        conf = nginx_conf(workdir / "nginx", port, prom.base_url, prom)
        nginx = _which("nginx") or "nginx"
        with started(
            [nginx, "-c", str(conf), "-p", str(workdir / "nginx")],
            f"http://127.0.0.1:{port}/nginx-ready",
            workdir / "nginx.log",
        ) as proc:
            bench.measure(Target(NGINX, f"http://127.0.0.1:{port}", process_tree(proc.pid)), full)
    if want(PASS):
        port = free_port()
        cmd = passthrough_command(port, prom)
        url = f"http://127.0.0.1:{port}"
        with started(cmd, f"{url}/-/ready", workdir / "passthrough.log") as proc:
            bench.measure(Target(PASS, url, process_tree(proc.pid)), full)

    def proxy(
        name: str,
        plan: Plan,
        tokens: list[Path] | None = None,
        pin: bool = False,
        prefix: str = "",
        hubs: Sequence[str] = (),
        **extra: str,
    ) -> None:
        port, mport = free_port(), free_port()
        env = proxy_env(prom, kc_url, port, mport, **extra)
        if hubs:
            env = hubs_env(env, prom, hubs, workdir / f"{name}-hubs.yaml")
        if args.proxy_src is not None:
            env["PYTHONPATH"] = str(args.proxy_src.resolve())
        env.update(_pairs(args.proxy_env))
        plan = Plan(
            [s for s in plan.shapes if s in chosen],
            plan.concs,
            [(s, c) for s, c in plan.extra if s in chosen],
        )
        url = f"http://127.0.0.1:{port}"
        with started(
            [str(PROXY_BIN), "serve"], f"http://127.0.0.1:{mport}/readyz", workdir / f"{name}.log", env
        ) as proc:
            tree = process_tree(proc.pid)
            note = ""
            if pin:
                time.sleep(0.5)  # every worker listening
                note = pin_workers(tree())
            bench.measure(Target(name, url, tree, note, prefix), plan, tokens)
            if name == WARM and args.profile > 0:
                bench.profile_text = _profile_under_load(bench, url, proc.pid, args.profile)

    if want(WARM):
        proxy(WARM, full)
    if want(NOAUDIT):
        proxy(NOAUDIT, Plan(["panel"], CONCURRENCY), PROXY_AUDIT_LOG="off")
    if want(HUBS3):
        proxy(
            HUBS3,
            Plan(["panel"], CONCURRENCY),
            prefix="/moc",
            hubs=("moc", "innabox-dev", "open-sovereign-ai-cloud"),
        )
    if want(FAIRNESS):
        port, mport = free_port(), free_port()
        env = proxy_env(prom, kc_url, port, mport, PROXY_LOG_LEVEL="warning")
        for name in ("PROXY_MAX_UPSTREAM_CONCURRENCY", "PROXY_MAX_CONCURRENT_PER_SUBJECT"):
            del env[name]  # the defaults are what the event-loop budget is about
        log("fair use: heaviest allowed request beside another caller (default limits)")
        with started(
            [str(PROXY_BIN), "serve"], f"http://127.0.0.1:{mport}/readyz", workdir / "fairness.log", env
        ):
            bench.fairness_text = fairness_report(
                f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mport}", kc.token(), kc.token("bob")
            )
    if args.cprofile > 0:
        bench.profile_text += "\n\n" + _cprofile(bench, prom, kc_url, args.cprofile)
    if want(COLD):
        proxy(
            COLD,
            Plan(["panel"], CONCURRENCY, [("dash4k", 16)]),
            PROXY_AUTHZ_CACHE_TTL="0s",
            PROXY_AUTHZ_DENY_CACHE_TTL="0s",
        )
    if want(NOCACHE):
        plan = Plan(["panel"], CONCURRENCY)
        # one token per request: enough for the fastest expected rate of each run
        sizes = [int(args.duration * rate) for rate in (450, 900, 900)]
        log(f"minting {sum(sizes)} tokens for the no-cache runs")
        files = []
        for i, size in enumerate(sizes):
            path = workdir / f"tokens-{i}.txt"
            path.write_text("\n".join(kc.minted(size)) + "\n")
            files.append(path)
        proxy(
            NOCACHE,
            plan,
            files,
            PROXY_AUTHZ_CACHE_TTL="0s",
            PROXY_AUTHZ_DENY_CACHE_TTL="0s",
            PROXY_AUTH_INTROSPECT="true",
        )
    if want(WORKERS2) and (os.cpu_count() or 1) >= 2:
        proxy(
            WORKERS2,
            Plan(["panel"], (16, 64), [("range6h", 16), ("dash4k", 16)]),
            pin=True,
            PROXY_WORKERS="2",
        )
    if want(LARGE):
        bench.large_realm_text = large_realm.run(
            workdir, log, lambda kc, logfile: _proxy_at(prom, kc, logfile)
        )
    if want(DASHBOARD):
        bench.dashboard_text = dashboard.run(
            workdir, log, _serve(args.proxy_src), args.dashboard_profile, args.dashboard_stagger
        )
    return bench


@contextlib.contextmanager
def _proxy_at(prom: PrometheusServer, kc_url: str, logfile: Path) -> Iterator[str]:
    """The proxy with the bench settings against another Keycloak; yields its URL."""
    with _proxy_process(prom, kc_url, logfile) as served:
        yield served.url


@contextlib.contextmanager
def _proxy_process(
    prom: PrometheusServer, kc_url: str, logfile: Path, profile: Path | None = None, **extra: str
) -> Iterator[dashboard.Served]:
    """The proxy with the bench settings and `extra` against another Keycloak: URLs and pid.

    With `profile`, under `bench/cprofile_proxy.py` (SIGUSR1 starts it, stats written there on exit).
    """
    port, mport = free_port(), free_port()
    env = proxy_env(prom, kc_url, port, mport, **extra)
    cmd = [str(PROXY_BIN), "serve"]
    if profile is not None:
        cmd = [sys.executable, str(BENCH / "cprofile_proxy.py"), str(profile)]
    with started(cmd, f"http://127.0.0.1:{mport}/readyz", logfile, env) as proc:
        yield dashboard.Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mport}/metrics", proc.pid)


def _pairs(settings: Sequence[str]) -> dict[str, str]:
    """`NAME=VALUE` texts as a mapping (only PROXY_* names: the proxy's own settings)."""
    out = dict(text.split("=", 1) for text in settings)
    wrong = [k for k in out if not k.startswith("PROXY_")]
    if wrong:
        sys.exit(f"--proxy-env takes PROXY_* settings only: {wrong}")
    return out


def _serve(proxy_src: Path | None) -> dashboard.Serve:
    """`_proxy_process`, running the proxy from `proxy_src` (PYTHONPATH) when given."""
    src = {} if proxy_src is None else {"PYTHONPATH": str(proxy_src.resolve())}

    def serve(
        prom: PrometheusServer, kc_url: str, logfile: Path, profile: Path | None = None, **extra: str
    ) -> contextlib.AbstractContextManager[dashboard.Served]:
        return _proxy_process(prom, kc_url, logfile, profile, **src, **extra)

    return serve


def _cprofile(bench: Bench, prom: PrometheusServer, kc_url: str, seconds: float) -> str:
    """The warm proxy under cProfile with the CPU clock while wrk loads it (panel, c=16)."""
    import pstats

    port, mport = free_port(), free_port()
    env = proxy_env(prom, kc_url, port, mport)
    out = bench.workdir / "proxy.prof"
    url = f"http://127.0.0.1:{port}"
    shape = SHAPES[0]
    with started(
        [sys.executable, str(BENCH / "cprofile_proxy.py"), str(out)],
        f"http://127.0.0.1:{mport}/readyz",
        bench.workdir / "cprofile.log",
        env,
    ) as proc:
        check_answers(url, shape, bench.token)
        wrk(url, shape, bench.bodies[shape.name], 16, 1, {"BENCH_TOKEN": bench.token})
        proc.send_signal(signal.SIGUSR1)
        log(f"cProfile under load for {seconds:g} s")
        res = wrk(url, shape, bench.bodies[shape.name], 16, seconds, {"BENCH_TOKEN": bench.token})
    raw: dict[Any, Any] = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    n = max(1, res["requests"])
    own: dict[str, float] = {}
    for key, (_, _, tt, _, callers) in raw.items():
        if key[0] == "~" and callers:  # a builtin: charge its callers, in proportion
            weight = sum(c[2] for c in callers.values()) or 1.0
            for caller, c in callers.items():
                area = _area(caller[0])
                own[area] = own.get(area, 0.0) + tt * (c[2] / weight if weight else 0)
        else:
            area = _area(key[0])
            own[area] = own.get(area, 0.0) + tt
    total = sum(own.values()) or 1e-9
    lines = [
        f"cProfile, CPU clock, {n} requests: {1e3 * total / n:.3f} ms CPU per request (with"
        " cProfile's overhead, which inflates Python-heavy code); own time by module:"
    ]
    for area, tt in sorted(own.items(), key=lambda kv: -kv[1])[:30]:
        lines.append(f"  {100 * tt / total:5.1f}%  {1e6 * tt / n:7.1f} us/req  {area}")
    funcs = sorted(((v[2], k) for k, v in raw.items() if k[0] != "~"), reverse=True)[:20]
    lines.append("top functions by own time:")
    for tt, key in funcs:
        lines.append(
            f"  {100 * tt / total:5.1f}%  {1e6 * tt / n:7.1f} us/req  {_area(key[0])}:{key[1]} {key[2]}"
        )
    return "\n".join(lines)


def _area(path: str) -> str:
    """A profile entry's module: `proxy/promql/parse.py`, `aiohttp/web_protocol.py`, `stdlib:ssl`."""
    if path == "~":
        return "builtins"
    for marker in ("site-packages/",):
        if marker in path:
            return path.split(marker, 1)[1]
    if "/proxy/" in path:
        return "proxy/" + path.split("/proxy/", 1)[1]
    return "stdlib:" + Path(path).stem


def _prometheus_procs(url: str) -> list[psutil.Process]:
    """The plain Prometheus serving `url` (found by its listen address)."""
    needle = "--web.listen-address=" + url.removeprefix("http://")
    return [p for p in psutil.process_iter(["cmdline"]) if needle in (p.info["cmdline"] or [])]


def _profile_under_load(bench: Bench, url: str, pid: int, seconds: float) -> str:
    """Load the warm proxy (panel, c=16) while py-spy samples it."""
    shape = SHAPES[0]
    log(f"profiling {pid} for {seconds:g} s")
    with subprocess.Popen(
        ["wrk", "-t1", "-c16", f"-d{seconds + 2:g}s", "-s", str(LUA), url],
        env={
            **os.environ,
            "BENCH_PATH": shape.path,
            "BENCH_BODY_FILE": str(bench.bodies[shape.name]),
            "BENCH_TOKEN": bench.token,
        },
        stdout=subprocess.DEVNULL,
    ) as load:
        time.sleep(1)
        text = profile(pid, seconds, bench.workdir)
        load.wait()
    return text


if __name__ == "__main__":
    sys.exit(main())
