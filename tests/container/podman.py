"""Podman as these machines need it: runc, explicit rlimits, host network (docs/operations.md)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The default rlimits podman asks for are refused here (RLIMIT_NOFILE/RLIMIT_NPROC errors);
# soft and hard nofile must be equal.
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1000:1000")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1000:1000"]

[engine]
runtime = "runc"
"""
APP_USER = "10001:0"


def podman(*args: str, check: bool = True, timeout: float = 120, env: Mapping[str, str] | None = None) -> str:
    """Run `podman --runtime runc …` and return stdout; raise with stderr when it fails."""
    proc = subprocess.run(
        ["podman", "--runtime", "runc", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:3])} … failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    return proc.stdout


def get(url: str, timeout: float = 5, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """GET url; (status, body), status 0 when nothing answers."""
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - loopback test URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def wait_for(url: str, timeout: float = 30, status: int = 200) -> float:
    """Poll url until it answers `status`; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if get(url, timeout=2)[0] == status:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer {status} within {timeout} s")


def logs(name: str) -> str:
    """Everything a container wrote (stdout and stderr)."""
    proc = subprocess.run(["podman", "logs", name], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout + proc.stderr


@dataclass
class Container:
    """One detached container of the image, run the way the chart runs the pod."""

    image: str
    env: Mapping[str, str]
    mounts: Sequence[tuple[Path, str]] = ()
    name: str = ""
    started: float = field(default=0.0, init=False)

    def start(self) -> Container:
        """`podman run -d` as the non-root user with a read-only root and an in-memory /tmp."""
        args = ["run", "-d", *ULIMITS, "--network=host", "--read-only", "--tmpfs", "/tmp:size=16m"]  # noqa: S108
        args += ["--user", APP_USER, "--cap-drop=ALL", "--security-opt=no-new-privileges"]
        for host, inside in self.mounts:
            args += ["-v", f"{host}:{inside}:ro"]
        for key, value in self.env.items():
            args += ["-e", f"{key}={value}"]
        self.started = time.monotonic()
        self.name = podman(*args, self.image, "serve").strip()
        return self

    def exec(self, *argv: str, check: bool = True) -> str:
        """Run a command inside the running container (as its user)."""
        return podman("exec", self.name, *argv, check=check)

    def logs(self) -> str:
        """Everything the container wrote (stdout and stderr)."""
        return logs(self.name)

    def inspect(self) -> dict[str, object]:
        """`podman inspect` of the container."""
        found: list[dict[str, object]] = json.loads(podman("inspect", self.name))
        return found[0]

    def wait(self, timeout: float = 60) -> int:
        """Wait for the container to exit; its exit code."""
        return int(podman("wait", self.name, timeout=timeout).strip())

    def remove(self) -> None:
        """Stop (if running) and remove the container."""
        podman("rm", "-f", "-t", "2", self.name, check=False)
