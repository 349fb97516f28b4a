"""The built image under test (`make image-test`): collected only when IMAGE_UNDER_TEST names it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.prometheus import PrometheusServer
from tests.support.stack import POLICY, REALM

IMAGE = os.environ.get("IMAGE_UNDER_TEST", "")
# Without an image these tests have nothing to run against: `make test` does not collect them.
collect_ignore_glob = [] if IMAGE else ["test_*.py"]

SECRETS = "/etc/prom-keycloak-proxy"


@pytest.fixture(scope="session")
def image() -> str:
    """The image reference `make image-test` built."""
    return IMAGE


@pytest.fixture(scope="session")
def pod_files(tmp_path_factory: pytest.TempPathFactory, prometheus: PrometheusServer) -> Path:
    """The upstream mTLS files and the client secret, readable by group 0 only (as a Secret volume
    with fsGroup would make them): the image's UID 10001 reads them through its group 0."""
    root = tmp_path_factory.mktemp("pod-files")
    for src, name in (
        (prometheus.ca, "ca.crt"),
        (prometheus.client_cert, "tls.crt"),
        (prometheus.client_key, "tls.key"),
    ):
        shutil.copy(src, root / name)
    (root / "client-secret").write_text(POLICY["resource_server"]["secret"], encoding="utf-8")
    for path in root.iterdir():
        os.chown(path, 0, 0)
        path.chmod(0o440)
    root.chmod(0o750)
    os.chown(root, 0, 0)
    return root


def container_env(
    prometheus: PrometheusServer, keycloak_url: str, port: int, metrics_port: int
) -> dict[str, str]:
    """The `PROXY_*` environment of the container: files for every secret, as the chart sets it."""
    return {
        "PROXY_LISTEN": f"127.0.0.1:{port}",
        "PROXY_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "PROXY_PROMETHEUS_BASE_URL": prometheus.base_url,
        "PROXY_PROMETHEUS_CA_CERT": f"{SECRETS}/ca.crt",
        "PROXY_PROMETHEUS_TLS_CERT": f"{SECRETS}/tls.crt",
        "PROXY_PROMETHEUS_TLS_KEY": f"{SECRETS}/tls.key",
        "PROXY_AUTH_BASE_URL": keycloak_url,
        "PROXY_AUTH_REALM": REALM,
        "PROXY_AUTH_CLIENT_ID": POLICY["resource_server"]["client_id"],
        "PROXY_AUTH_CLIENT_SECRET_FILE": f"{SECRETS}/client-secret",
        "PROXY_ACM_HUB": POLICY["hub"],
        "PROXY_SHUTDOWN_TIMEOUT": "10s",
    }


@pytest.fixture
def emulator(emulator_server: ThreadedEmulatorServer) -> Iterator[ThreadedEmulatorServer]:
    """The session's emulator, with any injected fault cleared after the test."""
    yield emulator_server
    emulator_server.emulator.clear_faults()
