"""`policies` CLI failures: one line on stderr, no traceback, documented exit codes (2 usage or
configuration, 1 failures); `--dry-run --detailed-exitcode`; secrets referenced, not written;
a service-account client instead of the master admin password."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from keycloak import KeycloakAdmin

from keycloak_emulator import Emulator, EmulatorServer, ThreadedEmulatorServer
from proxy.policies.cli import main
from proxy_demo.policy import DEMO_POLICY
from tests.support.proc import console_script
from tests.support.proxy_server import free_port


@pytest.fixture
def keycloak() -> Iterator[ThreadedEmulatorServer]:
    """An emulator with an empty `nerc` realm and the master admin `admin`/`admin`."""
    emu = Emulator()
    emu.import_realm({"realm": "nerc", "enabled": True})
    handle = EmulatorServer.start_in_thread(emu, host="127.0.0.1", port=0)
    yield handle
    handle.close()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    """The right admin password, in a file."""
    path = tmp_path / "admin-password"
    path.write_text("admin\n", encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`policies …` in-process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def login(url: str, password_file: Path) -> list[str]:
    """Connection options for the master admin."""
    return ["--server-url", url, "--admin-user", "admin", "--admin-password-file", str(password_file)]


def one_line(err: str) -> str:
    """The single stderr line (fails on more lines or a traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_wrong_admin_password_is_one_line_and_exit_1(
    keycloak: ThreadedEmulatorServer, tmp_path: Path
) -> None:
    """Through the console script: a wrong password → exit 1, one stderr line naming the refusal."""
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password", encoding="utf-8")
    proc = subprocess.run(
        [*console_script(), "policies", "apply", str(DEMO_POLICY), *login(keycloak.base_url, wrong)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert (
        line.startswith("policies apply: Keycloak at ") and "refused the login of admin user 'admin'" in line
    )


def test_unreachable_keycloak_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], password_file: Path
) -> None:
    """Nothing listens at the URL: exit 1, `cannot reach Keycloak at <url>`."""
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "apply", str(DEMO_POLICY), *login(url, password_file))
    assert code == 1
    assert one_line(err).startswith(f"policies apply: cannot reach Keycloak at {url}: ")


def test_unknown_realm_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], keycloak: ThreadedEmulatorServer, password_file: Path
) -> None:
    """A realm Keycloak does not have: exit 1 and a hint, not a traceback."""
    code, _, err = run(
        capsys, "apply", str(DEMO_POLICY), "--realm", "nope", *login(keycloak.base_url, password_file)
    )
    assert code == 1
    assert "answered 404: does realm 'nope' exist?" in one_line(err)


@pytest.mark.parametrize("command", ["validate", "apply", "export", "report"])
def test_missing_policies_file_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, password_file: Path
) -> None:
    """Every subcommand: a policies file that does not exist → exit 2, `no such file: …`."""
    missing = tmp_path / "nope.yaml"
    extra = login("http://127.0.0.1:1", password_file) if command == "apply" else []
    code, _, err = run(capsys, command, str(missing), *extra)
    assert code == 2
    assert one_line(err) == f"policies {command}: no such file: {missing}"


def test_missing_password_file_and_missing_credentials_are_exit_2(
    capsys: pytest.CaptureFixture[str],
    keycloak: ThreadedEmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unreadable --admin-password-file, or no credentials at all: exit 2, one line each."""
    monkeypatch.delenv("KEYCLOAK_ADMIN_PASSWORD", raising=False)
    code, _, err = run(capsys, "apply", str(DEMO_POLICY), *login(keycloak.base_url, tmp_path / "absent"))
    assert code == 2
    assert "--admin-password-file: cannot read" in one_line(err)

    code, _, err = run(
        capsys, "apply", str(DEMO_POLICY), "--server-url", keycloak.base_url, "--admin-user", "admin"
    )
    assert code == 2
    assert "needs --admin-password-file" in one_line(err)


def test_dry_run_detailed_exitcode_is_2_with_changes_and_0_without(
    capsys: pytest.CaptureFixture[str], keycloak: ThreadedEmulatorServer, password_file: Path
) -> None:
    """`--dry-run --detailed-exitcode`: 2 before apply (changes pending), 0 once applied."""
    conn = login(keycloak.base_url, password_file)
    code, out, _ = run(capsys, "apply", str(DEMO_POLICY), "--dry-run", "--detailed-exitcode", *conn)
    assert code == 2 and "change(s) not applied" in out
    code, _, _ = run(capsys, "apply", str(DEMO_POLICY), "--dry-run", *conn)
    assert code == 0  # without the flag a dry run succeeds either way
    assert run(capsys, "apply", str(DEMO_POLICY), *conn)[0] == 0
    code, out, _ = run(capsys, "apply", str(DEMO_POLICY), "--dry-run", "--detailed-exitcode", *conn)
    assert code == 0 and "no changes" in out


def _file_with_refs(tmp_path: Path) -> Path:
    """The demo policies with the resource-server secret in a file and client secrets in env."""
    data = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))
    (tmp_path / "rs-secret").write_text("secret-from-a-file\n", encoding="utf-8")
    data["resource_server"].pop("secret")
    data["resource_server"]["secret_file"] = "rs-secret"
    for client in data["clients"]:
        if client.pop("secret", None):
            client["secret_env"] = "TEST_SECRET_" + client["client_id"].upper().replace("-", "_")
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_secrets_come_from_files_and_environment(
    capsys: pytest.CaptureFixture[str],
    keycloak: ThreadedEmulatorServer,
    password_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """secret_file/secret_env: apply sets those secrets (client credentials work with them);
    an unset variable is a warning for validate and an error for apply."""
    path = _file_with_refs(tmp_path)
    code, out, _ = run(capsys, "validate", str(path))
    assert (
        code == 0
        and "warning: clients/0/secret_env: environment variable TEST_SECRET_RESEARCHER_TEAM_A is not set"
        in out
    )
    code, _, err = run(capsys, "apply", str(path), *login(keycloak.base_url, password_file))
    assert code == 1 and "TEST_SECRET_RESEARCHER_TEAM_A is not set" in err

    monkeypatch.setenv("TEST_SECRET_RESEARCHER_TEAM_A", "secret-from-env")
    assert run(capsys, "apply", str(path), *login(keycloak.base_url, password_file))[0] == 0
    emu = keycloak.emulator
    assert emu.client_token("nerc", "researcher-team-a", "secret-from-env")["access_token"]
    assert emu.client_token("nerc", "prom-keycloak-proxy", "secret-from-a-file")["access_token"]


def test_plain_secret_and_reference_together_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`secret` and `secret_env` on one client: a validation error naming both."""
    data = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))
    data["clients"][0]["secret_env"] = "X"
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 1 and "clients/0: secret and secret_env are exclusive" in out


def test_service_account_client_instead_of_the_admin_password(
    capsys: pytest.CaptureFixture[str],
    keycloak: ThreadedEmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--admin-client-id with its secret (file or env) applies; a wrong secret is exit 1, one line."""
    admin = KeycloakAdmin(
        server_url=keycloak.base_url + "/", username="admin", password="admin", realm_name="master"
    )
    admin.create_client(
        {
            "clientId": "policies-ci",
            "secret": "ci-secret",
            "serviceAccountsEnabled": True,
            "publicClient": False,
            "standardFlowEnabled": False,
        }
    )
    secret = tmp_path / "ci-secret"
    secret.write_text("ci-secret", encoding="utf-8")
    conn = ["--server-url", keycloak.base_url, "--admin-client-id", "policies-ci", "--admin-realm", "master"]
    code, out, err = run(capsys, "apply", str(DEMO_POLICY), *conn, "--admin-client-secret-file", str(secret))
    assert code == 0, err
    assert "change(s) applied" in out

    monkeypatch.setenv("KEYCLOAK_ADMIN_CLIENT_SECRET", "wrong")
    code, _, err = run(capsys, "apply", str(DEMO_POLICY), *conn)
    assert code == 1
    assert "refused the login of client 'policies-ci' in realm 'master'" in one_line(err)
