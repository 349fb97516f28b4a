"""`ensure_prometheus` and `PrometheusServer` fail loudly and clearly, with the log tail."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_demo import prometheus as prom_mod
from proxy_demo.certs import Pki
from proxy_demo.dataset import Series
from proxy_demo.prometheus import (
    PrometheusServer,
    PrometheusStartError,
    PrometheusUnavailable,
    ensure_prometheus,
)


def test_missing_binaries_without_root_raise_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not installed and not root: PrometheusUnavailable naming the Debian package."""
    monkeypatch.setattr(prom_mod, "_which", lambda name: None)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(PrometheusUnavailable, match="apt-get install -y prometheus"):
        ensure_prometheus()


def test_install_can_be_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`install=False` never runs apt-get, even as root."""
    monkeypatch.setattr(prom_mod, "_which", lambda name: None)
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("must not run anything"))
    with pytest.raises(PrometheusUnavailable):
        ensure_prometheus(install=False)


def _binaries() -> prom_mod.Binaries:
    try:
        return ensure_prometheus()
    except PrometheusUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.prometheus
def test_found_binaries_report_a_version() -> None:
    """The installed server reports a 2.x version line."""
    assert "version 2." in _binaries().version


@pytest.mark.prometheus
def test_server_that_exits_raises_with_log_tail(tmp_path: Path) -> None:
    """A server that dies at start raises PrometheusStartError quoting its log."""
    server = PrometheusServer(
        tmp_path / "p",
        Pki(tmp_path / "pki"),
        [Series({"__name__": "m"}, [(1_800_000_000.0, 1.0)])],
        rules=None,
        binaries=_binaries(),
        extra_args=["--no-such-flag"],
    )
    with pytest.raises(PrometheusStartError, match="no-such-flag"):
        server.start()
    assert not server.running


@pytest.mark.prometheus
def test_broken_rules_file_raises_with_log_tail(tmp_path: Path) -> None:
    """An invalid rules file makes start fail with Prometheus' own complaint in the message."""
    server = PrometheusServer(
        tmp_path / "p",
        Pki(tmp_path / "pki"),
        [],
        rules="groups:\n  - name: g\n    rules:\n      - record: x\n        expr: sum(\n",
        binaries=_binaries(),
    )
    with pytest.raises(PrometheusStartError, match=r"(?i)rule"):
        server.start()
    assert not server.running


@pytest.mark.prometheus
def test_empty_dataset_starts_an_empty_server(tmp_path: Path) -> None:
    """An identity that sees nothing gets a working, empty Prometheus (no backfill)."""
    with PrometheusServer(
        tmp_path / "p", Pki(tmp_path / "pki"), [], rules=None, binaries=_binaries()
    ) as server:
        assert server.query("count({__name__!=''})")["result"] == []
    assert not server.running
