"""Secrets read from files follow rotation; TLS files that do not load are configuration problems."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from proxy.config import load_settings
from proxy.filewatch import FileWatch, Secret
from proxy.hubs import hubs_of
from proxy_demo.certs import Pki

BASE = {
    "PROXY_PROMETHEUS_BASE_URL": "https://thanos.example:9091",
    "PROXY_AUTH_BASE_URL": "https://keycloak.example",
    "PROXY_AUTH_REALM": "nerc",
    "PROXY_AUTH_CLIENT_ID": "prom-keycloak-proxy",
    "PROXY_ACM_HUB": "moc",
}


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _replace(path: Path, text: str) -> None:
    """Write `text` to a new file and rename it over `path` (an atomic update)."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    os.replace(fresh, path)


def _kubernetes_volume(root: Path, version: str, secret: str) -> Path:
    """A Secret volume as the kubelet lays it out: `key -> ..data/key`, `..data -> ..<version>`."""
    (root / f"..{version}").mkdir()
    (root / f"..{version}" / "client-secret").write_text(secret + "\n")
    (root / "..data").symlink_to(f"..{version}")
    (root / "client-secret").symlink_to("..data/client-secret")
    return root / "client-secret"


def _swap(root: Path, version: str, secret: str) -> None:
    """The kubelet's update: a new timestamped directory, then `..data` renamed over atomically."""
    (root / f"..{version}").mkdir()
    (root / f"..{version}" / "client-secret").write_text(secret + "\n")
    (root / "..data_tmp").symlink_to(f"..{version}")
    os.replace(root / "..data_tmp", root / "..data")


def test_a_literal_secret_is_its_value() -> None:
    """Without a file the value given is the value, always."""
    assert Secret("s3cret").get() == "s3cret"
    assert Secret(None).get() is None


def test_a_renamed_file_is_read_after_the_interval_not_before(tmp_path: Path) -> None:
    """An atomic rename is seen once the interval has passed; before it the old value stays."""
    path, clock = tmp_path / "secret", Clock()
    path.write_text("old-secret\n")
    secret = Secret("old-secret", path, interval=5, clock=clock)
    _replace(path, "new-secret\n")
    clock.now += 4
    assert secret.get() == "old-secret"
    clock.now += 1
    assert secret.get() == "new-secret"


def test_the_kubernetes_data_symlink_swap_is_seen(tmp_path: Path) -> None:
    """Swapping `..data` to a new directory (how a mounted Secret changes) gives the new value."""
    clock = Clock()
    path = _kubernetes_volume(tmp_path, "2026_01_01", "first")
    secret = Secret(None, path, interval=2, clock=clock)
    assert secret.get() == "first"
    _swap(tmp_path, "2026_01_02", "second")
    clock.now += 2
    assert secret.get() == "second"


def test_a_failed_read_keeps_the_last_value_and_logs_once_without_it(tmp_path: Path) -> None:
    """A vanished or empty file keeps the last good value, logs one error (no secret), then recovers."""
    path, clock = tmp_path / "secret", Clock()
    path.write_text("good-secret-value\n")
    secret = Secret(None, path, interval=1, clock=clock)
    with capture_logs() as logs:
        path.unlink()
        for _ in range(3):
            clock.now += 1
            assert secret.get() == "good-secret-value"
        path.write_text("\n")  # empty: never a usable secret
        clock.now += 1
        assert secret.get() == "good-secret-value"
        _replace(path, "next-secret-value\n")
        clock.now += 1
        assert secret.get() == "next-secret-value"
    events = [entry["event"] for entry in logs]
    assert events == ["secret_file_unreadable", "secret_reloaded"]
    assert "secret-value" not in repr(logs)


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    """Only a changed stamp (mtime or inode) makes the watch report; an unchanged file costs a stat."""
    path, clock = tmp_path / "cert.pem", Clock()
    path.write_text("a")
    watch = FileWatch((path, None), 1, clock)
    clock.now += 1
    assert watch.changed() is None
    _replace(path, "b")
    clock.now += 1
    stamp = watch.changed()
    assert stamp is not None
    clock.now += 1
    assert watch.changed() == stamp  # not accepted: reported again
    watch.accept(stamp)
    clock.now += 1
    assert watch.changed() is None


def test_settings_remember_the_file_of_each_secret(tmp_path: Path) -> None:
    """`*_FILE` secrets keep their path (env beats the file, as for the value); literals keep none."""
    (tmp_path / "secret").write_text("from-file\n")
    (tmp_path / "token").write_text("token-from-file\n")
    env = {
        **BASE,
        "PROXY_AUTH_CLIENT_SECRET_FILE": str(tmp_path / "secret"),
        "PROXY_PROMETHEUS_TOKEN_FILE": str(tmp_path / "token"),
    }
    s = load_settings({}, env)
    assert s.secret_file("auth_client_secret") == tmp_path / "secret"
    assert s.secret_file("prometheus_token") == tmp_path / "token"
    (tmp_path / "secret").write_text("rotated\n")
    assert s.secret("auth_client_secret").get() == "rotated"
    s = load_settings({}, {**env, "PROXY_AUTH_CLIENT_SECRET": "literal"})
    assert s.secret_file("auth_client_secret") is None
    assert s.secret("auth_client_secret").get() == "literal"


def test_every_secret_file_reaches_its_user_re_readable(tmp_path: Path) -> None:
    """Top-level `*_FILE` and per-hub `*_file` secrets stay files: hubs_of hands them on re-readable."""
    for name in ("top", "own", "token", "hub-token"):
        (tmp_path / name).write_text(f"{name}-v1\n")
    (tmp_path / "proxy.yaml").write_text(
        "hubs:\n"
        "  - name: moc\n"
        "    prometheus_base_url: https://moc.example\n"
        f"    prometheus_token_file: {tmp_path / 'hub-token'}\n"
        "  - name: innabox\n"
        "    prometheus_base_url: https://innabox.example\n"
        "    auth_client_id: other\n"
        f"    auth_client_secret_file: {tmp_path / 'own'}\n"
    )
    env = {k: v for k, v in BASE.items() if k not in ("PROXY_PROMETHEUS_BASE_URL", "PROXY_ACM_HUB")}
    env |= {"PROXY_AUTH_CLIENT_SECRET_FILE": str(tmp_path / "top"), "PROXY_CERT_RELOAD_INTERVAL": "0s"}
    moc, innabox = hubs_of(load_settings({}, {**env, "PROXY_CONFIG": str(tmp_path / "proxy.yaml")}))
    assert moc.client_secret is not None and innabox.client_secret is not None
    assert (moc.client_secret.get(), innabox.client_secret.get()) == ("top-v1", "own-v1")
    assert moc.upstream.token_file == tmp_path / "hub-token"
    for name in ("top", "own"):
        _replace(tmp_path / name, f"{name}-v2\n")
    assert (moc.client_secret.get(), innabox.client_secret.get()) == ("top-v2", "own-v2")
    (single,) = hubs_of(
        load_settings(
            {},
            {**BASE, "PROXY_AUTH_CLIENT_SECRET": "s", "PROXY_PROMETHEUS_TOKEN_FILE": str(tmp_path / "token")},
        )
    )
    assert single.upstream.token_file == tmp_path / "token"
    _replace(tmp_path / "token", "token-v2\n")
    assert single.upstream.read_token() == "token-v2"


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The console entry (`python -m proxy serve`) with exactly `env`."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", "serve"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), **env},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("content", ["", "not a certificate\n"])
def test_a_ca_file_without_a_certificate_is_a_one_line_problem(
    tmp_path: Path, pki: Pki, content: str
) -> None:
    """An empty or non-PEM CA file, and a key that is not the certificate's, exit 2 listed with the
    other problems, one line each, no traceback."""
    ca = tmp_path / "ca.pem"
    ca.write_text(content)
    env = {
        **BASE,
        "PROXY_AUTH_CLIENT_SECRET": "s3cret",
        "PROXY_PROMETHEUS_CA_CERT": str(ca),
        "PROXY_AUTH_CA_CERT": str(pki.ca_cert),
        "PROXY_TLS_CERT": str(pki.server_cert),
        "PROXY_TLS_KEY": str(pki.client_key),  # not the certificate's key
        "PROXY_AUTH_TIMEOUT": "banana",
    }
    done = _serve(env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "invalid configuration:"
    assert any(line.strip().startswith("PROXY_AUTH_TIMEOUT:") for line in lines)
    assert f"  PROXY_PROMETHEUS_CA_CERT: {ca} holds no usable CA certificate" in done.stderr
    assert any(line.startswith("  PROXY_TLS_CERT:") and "KEY_VALUES_MISMATCH" in line for line in lines)
    assert not any("PROXY_AUTH_CA_CERT" in line for line in lines)
