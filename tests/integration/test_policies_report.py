"""`policies report`: the file and the emulator's live realm agree; direct changes show as drift."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from keycloak_emulator import Emulator, EmulatorServer, ThreadedEmulatorServer
from keycloak_emulator.store import Policy, new_id
from proxy.policies.cli import main
from proxy_demo.policy import DEMO_POLICY

BASE: dict[str, Any] = yaml.safe_load(DEMO_POLICY.read_text())
PASSWORD_FILE = Path(tempfile.mkdtemp()) / "admin-password"
PASSWORD_FILE.write_text("admin")
UNTIL = (datetime.now(UTC) + timedelta(days=7)).date()


def bounded_file(tmp_path: Path) -> Path:
    """The demo file with alice's grant ending in a week (Berlin time)."""
    grants = [{**g, "until": str(UNTIL)} if g.get("user") == "alice" else g for g in BASE["grants"]]
    path = tmp_path / "bounded.yaml"
    path.write_text(yaml.safe_dump({**BASE, "time_zone": "Europe/Berlin", "grants": grants}))
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ThreadedEmulatorServer, Path]]:
    """The emulator serving the bounded demo realm, and its file."""
    path = bounded_file(tmp_path)
    handle = EmulatorServer.start_in_thread(Emulator.from_files([path]), host="127.0.0.1", port=0)
    yield handle, path
    handle.close()


def report(path: Path, *args: str, handle: ThreadedEmulatorServer | None = None) -> tuple[int, str]:
    """Run `policies report`; exit code and stdout."""
    conn = []
    if handle is not None:
        conn = ["--live", "--server-url", handle.base_url, "--admin-user", "admin"]
        conn += ["--admin-password-file", str(PASSWORD_FILE)]
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["report", str(path), *args, *conn])
    return code, out.getvalue()


def rows(text: str) -> list[dict[str, str]]:
    """CSV rows."""
    return list(csv.DictReader(io.StringIO(text)))


def test_file_report_shows_window_and_warning(tmp_path: Path) -> None:
    """From the YAML: alice's grant until the inclusive day in Berlin, 'ends soon', and a warning."""
    path = bounded_file(tmp_path)
    code, text = report(path, "--format", "csv")
    assert code == 0
    alice = [r for r in rows(text) if r["principal"] == "alice"]
    assert [(r["project"], r["until"], r["status"]) for r in alice] == [
        ("team-a", f"{UNTIL} 23:59:59", "ends soon")
    ]
    assert "warning: user alice on HUB-moc-CLUSTER-nerc-ocp-prod-PROJECT-team-a: ends" in report(path)[1]


def test_live_agrees_with_file(served: tuple[ThreadedEmulatorServer, Path]) -> None:
    """The live realm loaded from the file reports the same rows, no drift, exit 0."""
    handle, path = served
    code_file, from_file = report(path, "--format", "csv", "--by", "person")
    code_live, live = report(path, "--format", "csv", "--by", "person", handle=handle)
    assert (code_file, code_live) == (0, 0)
    assert rows(live) == rows(from_file)


def test_direct_change_is_drift(served: tuple[ThreadedEmulatorServer, Path]) -> None:
    """A user policy for eve added to a project permission in the emulator shows as 'only in Keycloak'."""
    handle, path = served
    realm = handle.emulator.realm("nerc")
    client = realm.client_by_client_id(BASE["resource_server"]["client_id"])
    assert client is not None and client.authz is not None
    eve = realm.user_by_username("eve")
    assert eve is not None
    policy = Policy(id=new_id(), name="eve-by-hand", type="user", users=[eve.id])
    client.authz.policies[policy.id] = policy
    perm = client.authz.policy_named("HUB-moc-CLUSTER-nerc-ocp-test-PROJECT-team-c-GET-permission")
    assert perm is not None
    perm.policy_ids.append(policy.id)
    code, text = report(path, "--format", "csv", handle=handle)
    assert code == 1
    drift = [r for r in rows(text) if r["drift"]]
    assert [(r["principal"], r["project"], r["drift"]) for r in drift] == [
        ("eve", "team-c", "only in Keycloak")
    ]
    table = report(path, handle=handle)[1]
    assert "drift (1):" in table


def test_live_flags_portal_group_path(served: tuple[ThreadedEmulatorServer, Path]) -> None:
    """alice put into the portal's cluster group keeps access without end: report --live says so."""
    handle, path = served
    realm = handle.emulator.realm("nerc")
    alice = realm.user_by_username("alice")
    group = realm.group_by_path("/HUB-moc-CLUSTER-nerc-ocp-prod-GET")
    assert alice is not None and group is not None
    alice.group_ids.append(group.id)
    _, text = report(path, handle=handle)
    assert (
        "user alice on HUB-moc-CLUSTER-nerc-ocp-prod-PROJECT-team-a is bounded" in text
        and "through group HUB-moc-CLUSTER-nerc-ocp-prod-GET" in text
    )


def test_demo_policies_agree_with_emulator() -> None:
    """demo.yaml as the file and as the emulator's live realm: the same rows, no drift."""
    handle = EmulatorServer.start_in_thread(Emulator.from_files([DEMO_POLICY]), host="127.0.0.1", port=0)
    try:
        for by in ("project", "person"):
            code_file, from_file = report(DEMO_POLICY, "--format", "csv", "--by", by)
            code_live, live = report(DEMO_POLICY, "--format", "csv", "--by", by, handle=handle)
            assert (code_file, code_live) == (0, 0)
            assert rows(live) == rows(from_file) and len(rows(live)) >= 7
    finally:
        handle.close()
