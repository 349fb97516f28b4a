"""The built image, run as the chart runs it (non-root, read-only root) against the demo's
real Prometheus (mTLS) and the Keycloak emulator on the host."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.commands import check, examples
from proxy_demo.prometheus import PrometheusServer
from tests.support.proxy_server import free_port
from tests.support.stack import POLICY

from .conftest import SECRETS, container_env
from .podman import Container, get, podman, wait_for

# Code that must never ship in the service image.
FORBIDDEN_MODULES = (
    "keycloak_emulator",
    "proxy_demo",
    "trustme",
    "pytest",
    "tests",
    "hypothesis",
    "uv",
    "pip",
)


@pytest.fixture
def running(
    image: str, prometheus: PrometheusServer, emulator: ThreadedEmulatorServer, pod_files: Path
) -> Iterator[tuple[Container, str, str]]:
    """A container of the image on free host ports: (container, proxy URL, metrics URL)."""
    port, metrics_port = free_port(), free_port()
    env = container_env(prometheus, emulator.base_url, port, metrics_port)
    container = Container(image, env, [(pod_files, SECRETS)]).start()
    try:
        yield container, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
    finally:
        print(container.logs()[-3000:])
        container.remove()


def test_image_holds_only_the_service(image: str) -> None:
    """No emulator, demo, test code, trustme, pip or uv in the image; prints its size."""
    probe = "import importlib.util as u, json; print(json.dumps({m: bool(u.find_spec(m)) for m in %r}))"
    out = podman(
        "run",
        "--rm",
        "--network=none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=1000:1000",
        "--entrypoint",
        "python",
        image,
        "-c",
        probe % (FORBIDDEN_MODULES,),
    )
    found = json.loads(out)
    assert not any(found.values()), f"forbidden code in the image: {[m for m, f in found.items() if f]}"
    size = int(json.loads(podman("image", "inspect", image))[0]["Size"])
    print(f"\nimage size: {size / 1e6:.0f} MB")
    assert size < 400e6


def test_runs_non_root_read_only_and_answers_every_demo_check(
    running: tuple[Container, str, str], emulator: ThreadedEmulatorServer
) -> None:
    """UID 10001, nothing writable but /tmp, ready within seconds, and every demo block answers."""
    container, base, metrics = running
    took = wait_for(f"{metrics}/readyz", timeout=60)
    print(f"\nstart-up to ready: {time.monotonic() - container.started:.2f} s (readyz polled {took:.2f} s)")

    assert container.exec("python", "-c", "import os; print(os.getuid(), os.getgid())").split() == [
        "10001",
        "0",
    ]
    denied = container.exec("python", "-c", "open('/app/x', 'w')", check=False)
    assert denied == ""  # the write raised; nothing printed on stdout
    assert "Read-only file system" in podman(
        "exec",
        container.name,
        "python",
        "-c",
        "import os\ntry:\n open('/opt/venv/x','w')\nexcept OSError as e: print(e)",
    )
    assert container.inspect()["HostConfig"]["ReadonlyRootfs"] is True  # type: ignore[index]

    assert asyncio.run(check(examples(POLICY, emulator.base_url, base))) == 0
    assert get(f"{metrics}/healthz")[0] == 200
    assert b"proxy_" in get(f"{metrics}/metrics")[1]
    status = container.exec("python", "-c", "print(open('/proc/1/status').read())")
    rss = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    print(f"peak RSS of the proxy after the demo checks: {int(rss) // 1024} MiB")


def test_sigterm_drains_in_flight_requests(
    running: tuple[Container, str, str], emulator: ThreadedEmulatorServer
) -> None:
    """SIGTERM while a request waits on Keycloak: that request still gets 200, the process exits 0."""
    container, base, metrics = running
    wait_for(f"{metrics}/readyz", timeout=60)
    client = next(c for c in POLICY["clients"] if c.get("service_account") and c.get("secret"))
    emulator.emulator.inject_fault("token.client_credentials", status=None, delay=3.0, times=1)
    result: dict[str, int] = {}

    def slow_basic_request() -> None:
        import base64

        auth = base64.b64encode(f"{client['client_id']}:{client['secret']}".encode()).decode()
        result["status"] = get(
            f"{base}/api/v1/query?query=up", timeout=20, headers={"Authorization": f"Basic {auth}"}
        )[0]

    worker = threading.Thread(target=slow_basic_request)
    worker.start()
    time.sleep(1.0)  # the request is now waiting on the delayed token call
    podman("kill", "--signal", "TERM", container.name)
    code = container.wait(timeout=30)
    worker.join(timeout=20)

    assert result.get("status") == 200, container.logs()[-2000:]
    assert code == 0
    assert get(f"{base}/api/v1/query?query=up", timeout=2)[0] == 0  # nothing listens any more
