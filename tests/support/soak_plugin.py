"""Pytest plugin: the `--soak-duration` option (default 2m) and the `soak_duration` fixture.

`pytest_addoption` only works in the rootdir conftest or in plugins, so this module is listed in
`pytest_plugins` of `tests/conftest.py`.
"""

from __future__ import annotations

import pytest

from proxy.durations import parse_duration


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register `--soak-duration` (Prometheus-style duration, e.g. 2m, 10m, 1h)."""
    parser.addoption("--soak-duration", default="2m",
                     help="how long tests/reliability/test_soak.py runs (default 2m)")


@pytest.fixture(scope="session")
def soak_duration(request: pytest.FixtureRequest) -> float:
    """The soak duration in seconds."""
    return float(parse_duration(str(request.config.getoption("--soak-duration"))))
