"""Session fixtures for a real Prometheus environment (docs/testing.md).

Register them once in `tests/conftest.py`:

    pytest_plugins = ["tests.support.fixtures"]

(`tests.support` must be importable: run pytest from the repository root with `python -m pytest`,
or set `pythonpath = ["."]` under `[tool.pytest.ini_options]`.)

Fixtures:
- `pki` (session) -> `Pki`: CA, server cert for 127.0.0.1/localhost, client cert, unrelated CA +
  client. Shared: do not rotate it to something invalid; use `pki_factory` for that.
- `pki_factory` (session) -> `Callable[[], Pki]`: a fresh, independent `Pki` per call.
- `demo_series` (session) -> `list[Series]`: the dataset, built once at session start.
- `prometheus_binaries` (session) -> `Binaries`: skips the test if Prometheus cannot be installed.
- `prometheus` (session) -> started `PrometheusServer` with the full dataset and `DEMO_RULES`.
  Shared by every test of the worker: never stop it; use `prometheus_factory` for outages.
- `prometheus_factory` (session) -> `Callable[..., PrometheusServer]`: starts an extra server
  (kwargs: `pki`, `series`, `rules`, `start`), stopped at session end.
- `oracle_prometheus_factory` (session) -> `OraclePrometheusFactory`: `.get(grant)` starts (once
  per grant) a Prometheus holding only that grant's visible series; hub-wide grants reuse
  `prometheus`.

pytest-xdist: every worker has its own session, so each worker starts its own servers on its own
free ports under its own `tmp_path_factory` directory; nothing is shared across workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from proxy_demo.certs import Pki
from proxy_demo.dataset import Series, build_dataset
from proxy_demo.prometheus import (
    DEMO_RULES,
    Binaries,
    PrometheusServer,
    PrometheusUnavailable,
    ensure_prometheus,
)
from tests.support.prometheus import OraclePrometheusFactory


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The session's PKI (files under a per-worker temporary directory)."""
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def pki_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Pki]:
    """Make independent PKIs, for tests that break or rotate certificates."""

    def make() -> Pki:
        return Pki(tmp_path_factory.mktemp("pki-extra"))

    return make


@pytest.fixture(scope="session")
def demo_series() -> list[Series]:
    """The demo dataset, built once (3 h back and 3 h ahead of session start)."""
    return build_dataset()


@pytest.fixture(scope="session")
def prometheus_binaries() -> Binaries:
    """Prometheus and promtool, installed if needed; skip only when that is impossible."""
    try:
        return ensure_prometheus()
    except PrometheusUnavailable as exc:
        pytest.skip(f"real Prometheus unavailable: {exc}")


@pytest.fixture(scope="session")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Pki,
    demo_series: list[Series],
    prometheus_binaries: Binaries,
) -> Iterator[PrometheusServer]:
    """The full-dataset Prometheus (mTLS), started once per worker session."""
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"), pki, demo_series, binaries=prometheus_binaries
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Pki,
    demo_series: list[Series],
    prometheus_binaries: Binaries,
) -> Iterator[Callable[..., PrometheusServer]]:
    """Start extra Prometheus servers (own directories), all stopped at session end."""
    started: list[PrometheusServer] = []
    counter = itertools.count()

    def make(
        *,
        pki: Pki = pki,
        series: Sequence[Series] | None = None,
        rules: str | None = DEMO_RULES,
        start: bool = True,
        **kwargs: Any,
    ) -> PrometheusServer:
        server = PrometheusServer(
            tmp_path_factory.mktemp(f"prometheus-extra-{next(counter)}"),
            pki,
            demo_series if series is None else series,
            rules=rules,
            binaries=prometheus_binaries,
            **kwargs,
        )
        started.append(server)
        return server.start() if start else server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def oracle_prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Pki,
    demo_series: list[Series],
    prometheus_binaries: Binaries,
    prometheus: PrometheusServer,
) -> Iterator[OraclePrometheusFactory]:
    """Per-grant oracle servers, each started at most once per worker session."""
    factory = OraclePrometheusFactory(
        tmp_path_factory.mktemp("oracles"),
        pki,
        demo_series,
        binaries=prometheus_binaries,
        full=prometheus,
    )
    try:
        yield factory
    finally:
        factory.close()
