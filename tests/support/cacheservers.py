"""Real memcached and Redis servers (Debian `memcached`, `redis-server`) on loopback ports.

`make setup` installs both (and stops the system services the packages start). Fixtures:
- `memcached_server` / `memcached_tls_server` (session): plain memcached, and memcached over TLS
  that refuses clients without a certificate from the test CA (`-Z -o ssl_verify_mode=2`);
- `redis_server` (session): Redis with the default user off and an ACL user `proxy` with
  `REDIS_PASSWORD`, plain on `.port` and TLS (client certificate optional) on `.tls_port`;
- `cache_server_factory` (function): starts extra servers a test may stop (outages).

Each pytest-xdist worker starts its own servers on its own free ports.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from proxy.config import Settings, load_settings
from proxy_demo.certs import Pki
from tests.support.proxy_server import free_port

# The options every configuration needs (a single hub), for settings built by backend tests.
REQUIRED_ENV = {
    "PROXY_PROMETHEUS_BASE_URL": "https://thanos.example:9091/api/metrics/v1/default",
    "PROXY_AUTH_BASE_URL": "https://keycloak.example",
    "PROXY_AUTH_REALM": "nerc",
    "PROXY_AUTH_CLIENT_ID": "prom-keycloak-proxy",
    "PROXY_AUTH_CLIENT_SECRET": "s3cret",
    "PROXY_ACM_HUB": "moc",
}
REDIS_USER = "proxy"
REDIS_PASSWORD = "redis-test-password-0123456789"  # a test value, never a real secret


def cache_settings(environ: dict[str, str] | None = None, **flags: Any) -> Settings:
    """Settings with the required options, `environ` (`PROXY_*`) and `flags`; warnings dropped."""
    return load_settings(flags, REQUIRED_ENV | (environ or {}), warn=lambda _: None)


@dataclass
class CacheServer:
    """One server process: `address` is `127.0.0.1:port` (`tls_address` for Redis' TLS port)."""

    kind: str
    argv: list[str]
    port: int
    tls_port: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """`host:port` of the plain (or, for TLS memcached, the only) listener."""
        return f"127.0.0.1:{self.port}"

    @property
    def tls_address(self) -> str:
        """`host:port` of Redis' TLS listener."""
        assert self.tls_port is not None
        return f"127.0.0.1:{self.tls_port}"

    def start(self, timeout: float = 10.0) -> CacheServer:
        """Start the process and wait until its ports accept connections."""
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        for port in (self.port, self.tls_port):
            while port is not None and not _accepts(port):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.kind} did not start: {self.argv}")
                time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop the process (the port then refuses connections)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _accepts(port: int) -> bool:
    """Whether 127.0.0.1:`port` accepts a TCP connection now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _binary(name: str) -> str:
    """The server binary's path (Debian installs it in /usr/bin, outside some PATHs)."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run `make setup` (it installs the Debian package)")
    return found


def memcached(*, pki: Pki | None = None) -> CacheServer:
    """A memcached on a free loopback port; with `pki`, TLS requiring a client cert from its CA."""
    port = free_port()
    argv = [_binary("memcached"), "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "32", "-t", "1"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]  # memcached refuses to run as root without naming the user
    if pki is not None:
        options = (
            f"ssl_chain_cert={pki.server_cert},ssl_key={pki.server_key},"
            f"ssl_ca_cert={pki.ca_cert},ssl_verify_mode=2"
        )
        argv += ["-Z", "-o", options]
    return CacheServer("memcached", argv, port)


def redis(directory: Path, pki: Pki) -> CacheServer:
    """A Redis with ACL user `proxy` (default user off), plain and TLS listeners, nothing persisted."""
    port, tls_port = free_port(), free_port()
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                f"tls-port {tls_port}",
                f"tls-cert-file {pki.server_cert}",
                f"tls-key-file {pki.server_key}",
                f"tls-ca-cert-file {pki.ca_cert}",
                "tls-auth-clients optional",
                'save ""',
                "appendonly no",
                f"dir {directory}",
                "user default off",
                f"user {REDIS_USER} on >{REDIS_PASSWORD} ~pkp1:* +get +set +ping +@connection",
                "",
            ]
        )
    )
    return CacheServer("redis", [_binary("redis-server"), str(conf)], port, tls_port)


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[CacheServer]:
    """A plain memcached for the session (never stop it: use `cache_server_factory`)."""
    server = memcached().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_tls_server(pki: Pki) -> Iterator[CacheServer]:
    """memcached over TLS, verifying client certificates against the session CA."""
    server = memcached(pki=pki).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CacheServer]:
    """A Redis for the session with a password-protected ACL user, plain and TLS ports."""
    server = redis(tmp_path_factory.mktemp("redis"), pki).start()
    yield server
    server.stop()


@pytest.fixture
def cache_server_factory(pki: Pki, tmp_path: Path) -> Iterator[Callable[[str], CacheServer]]:
    """Start extra servers ("memcached" or "redis") that the test may stop; all stopped after it."""
    started: list[CacheServer] = []

    def make(kind: str) -> CacheServer:
        server = memcached() if kind == "memcached" else redis(tmp_path / f"redis-{len(started)}", pki)
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()
