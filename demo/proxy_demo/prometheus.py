"""A real Prometheus on loopback, TLS with required client certificates, backfilled with a dataset.

Used by `prom-keycloak-proxy demo` and by the test suite, so it depends on nothing test-only
except trustme (through `certs`). Synchronous on purpose: start/stop happen once per session.

Prometheus 2.42 facts this module relies on (checked against the Debian build):
- `promtool tsdb create-blocks-from openmetrics` accepts samples in the future and Prometheus
  serves them; an instant query at "now" picks the latest sample at or before now.
- With blocks reaching into the future the head's lower bound is the newest block's end, so
  rule evaluation at "now" fails with `out of bounds` (rule `health: err`, `ALERTS` and
  recording-rule samples dropped, alerts still listed). Setting
  `storage.tsdb.out_of_order_time_window` larger than the future span lets those appends in.
- The web config's TLS files are read per handshake, so rotated server certificates are picked
  up without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from proxy_demo.certs import Pki
from proxy_demo.dataset import Series, to_openmetrics

__all__ = [
    "DEMO_RULES",
    "Binaries",
    "PrometheusApiError",
    "PrometheusServer",
    "PrometheusStartError",
    "PrometheusUnavailable",
    "ensure_prometheus",
    "free_port",
]

_SEARCH_DIRS = ("/usr/bin", "/usr/local/bin", "/bin")
_APT_LOCK = Path(tempfile.gettempdir()) / "prom-keycloak-proxy-apt.lock"

# Every rule keeps `cluster` and every project label of its inputs (or sets them to the values its
# selectors pin), so an output series is visible to exactly the callers who see its inputs. The
# no-leak oracle relies on this: a Prometheus holding only a caller's visible series, running the
# same rules, produces exactly the rule outputs that caller may see on the full one.
DEMO_RULES = """\
groups:
  - name: gpu.rules
    interval: 1s
    rules:
      - record: gpu:fb_used:gib
        expr: DCGM_FI_DEV_FB_USED / 1024
      - alert: GpuBusy
        expr: DCGM_FI_DEV_GPU_UTIL > 0
        labels:
          severity: info
        annotations:
          summary: "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} is in use"
      - alert: GpuIdle
        expr: DCGM_FI_DEV_GPU_UTIL == 0
        labels:
          severity: warning
      - alert: GpuPowerHighForLong
        expr: DCGM_FI_DEV_POWER_USAGE > 100
        for: 1h
        labels:
          severity: warning
      - alert: GpuMemoryExhausted
        expr: DCGM_FI_DEV_FB_USED > 1e9
        labels:
          severity: critical
  - name: workload.rules
    interval: 1s
    rules:
      - record: namespace:vllm_num_requests_running:sum
        expr: sum by (cluster, namespace) (vllm:num_requests_running)
      - alert: VllmServing
        expr: vllm:num_requests_running{cluster="nerc-ocp-prod",namespace="team-a"} >= 0
        labels:
          cluster: nerc-ocp-prod
          namespace: team-a
          severity: none
      - alert: VllmBacklog
        expr: vllm:num_requests_waiting{cluster="nerc-ocp-test",namespace="team-c"} > 1000
        labels:
          cluster: nerc-ocp-test
          namespace: team-c
          severity: warning
  - name: cluster.rules
    interval: 1s
    rules:
      - alert: ClusterCpuCapacityLow
        expr: cluster:cpu_cores:sum < 1000
        labels:
          severity: info
      - alert: HubComponentUp
        expr: up{job="thanos-querier"} == 1
        labels:
          severity: none
"""


class PrometheusUnavailable(RuntimeError):
    """Prometheus/promtool are not installed and cannot be installed here."""


class PrometheusStartError(RuntimeError):
    """Prometheus (or the backfill) failed; the message carries the log tail."""


class PrometheusApiError(RuntimeError):
    """Prometheus answered a helper call with a non-success status."""

    def __init__(self, status: int, body: bytes) -> None:
        """Keep the HTTP status and body for the caller."""
        super().__init__(f"Prometheus answered {status}: {body[:500]!r}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Binaries:
    """Paths of the `prometheus` and `promtool` executables and the server's version line."""

    prometheus: Path
    promtool: Path
    version: str


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    if found:
        return Path(found)
    for d in _SEARCH_DIRS:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def _find() -> Binaries | None:
    prom, tool = _which("prometheus"), _which("promtool")
    if prom is None or tool is None:
        return None
    out = subprocess.run([str(prom), "--version"], capture_output=True, text=True, timeout=30, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return Binaries(prom, tool, first[0] if first else "unknown")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # pytest-xdist workers may all find Prometheus missing at once; dpkg allows one installer
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_prometheus(*, install: bool = True) -> Binaries:
    """Find `prometheus` and `promtool`; as root, `apt-get install` them if missing; else raise."""
    found = _find()
    if found is not None:
        return found
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PrometheusUnavailable(
            "prometheus/promtool not found on PATH; install the Debian package `prometheus` "
            "(apt-get install -y prometheus) or put both binaries on PATH"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
    with _file_lock(_APT_LOCK):
        found = _find()
        if found is not None:
            return found
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            # a fresh container has empty package lists; refresh once and retry
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        found = _find()
    if found is None:
        raise PrometheusUnavailable(
            f"apt-get install prometheus failed (exit {res.returncode}): {res.stderr[-2000:]}"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the caller retries if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _yaml_str(value: str | Path) -> str:
    # JSON strings are valid YAML scalars and escape everything a path could contain
    return json.dumps(str(value))


def _terminate(proc: subprocess.Popen[bytes], log: IO[bytes] | None) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if log is not None:
        log.close()


class PrometheusServer:
    """A Prometheus process over a backfilled TSDB, serving HTTPS with required client certs.

    `base_url` (https://127.0.0.1:PORT), `ca`, `client_cert`, `client_key` are what a client
    (the proxy) needs; `log_path` holds the server's log; `startup_seconds` the last start time.
    """

    def __init__(
        self,
        workdir: Path | str,
        pki: Pki,
        series: Sequence[Series],
        *,
        rules: str | None = DEMO_RULES,
        binaries: Binaries | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Prepare (nothing runs until `start()`); `rules` is a rules-file YAML text or None."""
        self.workdir = Path(workdir)
        self.pki = pki
        self.series = list(series)
        self.rules = rules
        self.host = host
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self._binaries = binaries
        self._fixed_port = port is not None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.startup_seconds = 0.0
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "prometheus.log"
        self.config_path = self.workdir / "prometheus.yml"
        self.web_config_path = self.workdir / "web.yml"
        self.rules_path = self.workdir / "rules.yml"

    # ------------------------------------------------------------------ attributes for clients

    @property
    def base_url(self) -> str:
        """`https://HOST:PORT` of the running server."""
        return f"https://{self.host}:{self.port}"

    @property
    def ca(self) -> Path:
        """CA file that signed the server certificate."""
        return self.pki.ca_cert

    @property
    def client_cert(self) -> Path:
        """Client certificate Prometheus accepts."""
        return self.pki.client_cert

    @property
    def client_key(self) -> Path:
        """Key of `client_cert`."""
        return self.pki.client_key

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the server, when started."""
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------------ lifecycle

    def _write_configs(self) -> None:
        newest = max((t for s in self.series for t, _ in s.samples), default=time.time())
        # must cover the dataset's future span, or rule results are dropped as out of bounds
        ooo_hours = max(1, int((newest - time.time()) // 3600) + 2)
        cfg = [
            "global:",
            "  scrape_interval: 30s",
            "  evaluation_interval: 1s",
            "scrape_configs: []",
            "storage:",
            "  tsdb:",
            f"    out_of_order_time_window: {ooo_hours}h",
        ]
        if self.rules is not None:
            self.rules_path.write_text(self.rules)
            cfg += ["rule_files:", f"  - {_yaml_str(self.rules_path)}"]
        self.config_path.write_text("\n".join(cfg) + "\n")
        self.web_config_path.write_text(
            "tls_server_config:\n"
            f"  cert_file: {_yaml_str(self.pki.server_cert)}\n"
            f"  key_file: {_yaml_str(self.pki.server_key)}\n"
            "  client_auth_type: RequireAndVerifyClientCert\n"
            f"  client_ca_file: {_yaml_str(self.pki.ca_cert)}\n"
            "  min_version: TLS12\n"
        )

    def _backfill(self, promtool: Path) -> None:
        marker = self.workdir / ".backfilled"
        if marker.exists():
            return  # restart after stop(): the TSDB already holds the data
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.series:
            marker.touch()
            return  # an identity that sees nothing gets an empty TSDB
        om = self.workdir / "dataset.om"
        om.write_text(to_openmetrics(self.series))
        log = self.workdir / "backfill.log"
        with log.open("wb") as fh:
            res = subprocess.run(
                [str(promtool), "tsdb", "create-blocks-from", "openmetrics", str(om), str(self.data_dir)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        if res.returncode != 0:
            raise PrometheusStartError(f"promtool backfill failed:\n{_tail(log)}")
        om.unlink()
        marker.touch()

    def start(self, *, wait_for_rules: bool = True) -> PrometheusServer:
        """Backfill (first time only), start the server, wait until it answers over mTLS."""
        if self.running:
            return self
        began = time.monotonic()
        binaries = self._binaries or ensure_prometheus()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        self._backfill(binaries.promtool)
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            # a restart first tries its old port, so clients configured for it reconnect
            if not self._fixed_port and (attempt > 0 or not self.port):
                self.port = free_port(self.host)
            try:
                self._launch(binaries.prometheus)
                self._wait_ready()
                break
            except PrometheusStartError:
                in_use = "address already in use" in _tail(self.log_path, 5)
                self.stop()
                if not in_use or attempt == attempts - 1:
                    raise
        if wait_for_rules and self.rules is not None:
            self._wait_rules_evaluated()
        self.startup_seconds = time.monotonic() - began
        return self

    def _launch(self, prometheus: Path) -> None:
        cmd = [
            str(prometheus),
            f"--config.file={self.config_path}",
            f"--web.config.file={self.web_config_path}",
            f"--web.listen-address={self.host}:{self.port}",
            f"--storage.tsdb.path={self.data_dir}",
            "--storage.tsdb.retention.time=30d",
            "--log.level=info",
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        self._proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        # if the owner forgets stop() (crashed test session, Ctrl-C in the demo) the server
        # must not outlive this interpreter
        self._finalizer = weakref.finalize(self, _terminate, self._proc, log)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise PrometheusStartError(
                    f"prometheus exited with {code}; log tail:\n{_tail(self.log_path)}"
                )
            try:
                status, _ = self.request("GET", "/-/ready", timeout=2)
                if status == 200:
                    return
                last_error = f"/-/ready answered {status}"
            except (OSError, http.client.HTTPException) as exc:
                last_error = repr(exc)
            time.sleep(0.05)
        raise PrometheusStartError(
            f"prometheus not ready after {self.startup_timeout}s ({last_error}); "
            f"log tail:\n{_tail(self.log_path)}"
        )

    def _wait_rules_evaluated(self) -> None:
        # Alerts appear in /api/v1/alerts after a group's first evaluation, but Prometheus 2.42
        # writes `ALERTS` samples only once the rule's `for` state is restored, which is the
        # third evaluation after start. Wait for that, so every rule output is queryable.
        seen: dict[str, set[str]] = {}
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            groups = self.api("/api/v1/rules")["groups"]
            for g in groups:
                if not g["lastEvaluation"].startswith("0001-"):
                    seen.setdefault(f"{g['file']}/{g['name']}", set()).add(g["lastEvaluation"])
            if groups and len(seen) == len(groups) and all(len(v) >= 3 for v in seen.values()):
                return
            time.sleep(0.1)
        raise PrometheusStartError(f"rules never evaluated; log tail:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()  # runs _terminate once and detaches the exit hook
            self._finalizer = None
        self._proc = None

    def __enter__(self) -> PrometheusServer:
        """Start on entering a `with` block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving a `with` block."""
        self.stop()

    # ------------------------------------------------------------------ HTTP helpers (mTLS)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context with the current client certificate (re-read, so rotation shows)."""
        return self.pki.client_context()

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | Sequence[str]] | None = None,
        *,
        context: ssl.SSLContext | None = None,
        timeout: float = 30,
    ) -> tuple[int, bytes]:
        """Send one request over mTLS; GET puts `params` in the URL, POST in a form body."""
        query = urllib.parse.urlencode(params or {}, doseq=True)
        body: bytes | None = None
        headers = {"Accept": "application/json"}
        if method == "GET" and query:
            path = f"{path}?{query}"
        elif query:
            body = query.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=context or self.ssl_context(), timeout=timeout
        )
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def api(
        self,
        path: str,
        params: Mapping[str, str | Sequence[str]] | None = None,
        method: str = "GET",
    ) -> Any:
        """Call an API path and return the envelope's `data`; raise on a non-success answer."""
        status, body = self.request(method, path, params)
        if status != 200:
            raise PrometheusApiError(status, body)
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise PrometheusApiError(status, body)
        return doc["data"]

    def query(self, q: str, time: float | str | None = None) -> Any:
        """`/api/v1/query` → `data` (`resultType`, `result`)."""
        params = {"query": q}
        if time is not None:
            params["time"] = str(time)
        return self.api("/api/v1/query", params)

    def query_range(self, q: str, start: float, end: float, step: float | str) -> Any:
        """`/api/v1/query_range` → `data`."""
        return self.api(
            "/api/v1/query_range",
            {"query": q, "start": str(start), "end": str(end), "step": str(step)},
        )

    def label_values(self, name: str, match: Sequence[str] = ()) -> list[str]:
        """`/api/v1/label/<name>/values` → the values."""
        params = {"match[]": list(match)} if match else None
        return list(self.api(f"/api/v1/label/{urllib.parse.quote(name)}/values", params))

    def series_labels(self, match: Sequence[str]) -> list[dict[str, str]]:
        """`/api/v1/series` → the label sets."""
        return list(self.api("/api/v1/series", {"match[]": list(match)}))
