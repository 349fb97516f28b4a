"""`policies apply`/`export` of time-bounded grants against the emulator, judged by its UMA answers."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from keycloak_emulator import Emulator, EmulatorError, EmulatorServer, ThreadedEmulatorServer
from proxy.policies.cli import main
from proxy_demo.policy import DEMO_POLICY

BASE: dict[str, Any] = yaml.safe_load(DEMO_POLICY.read_text())
RS = BASE["resource_server"]["client_id"]
PASSWORD_FILE = Path(tempfile.mkdtemp()) / "admin-password"
PASSWORD_FILE.write_text("admin")
TODAY = datetime.now(UTC).date()
ALICE = "HUB-moc-CLUSTER-nerc-ocp-prod-PROJECT-team-a"
ALICE_PERMISSION = f"{ALICE}-GET-user-alice-permission"


@pytest.fixture
def keycloak() -> Iterator[ThreadedEmulatorServer]:
    """An emulator with an empty `nerc` realm, served on loopback."""
    emu = Emulator()
    emu.import_realm({"realm": "nerc", "enabled": True})
    handle = EmulatorServer.start_in_thread(emu, host="127.0.0.1", port=0)
    yield handle
    handle.close()


def write(tmp_path: Path, alice: dict[str, Any], name: str = "p.yaml") -> Path:
    """The demo file with alice's grant replaced."""
    grants = [g for g in BASE["grants"] if g.get("user") != "alice"]
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**BASE, "grants": [{"user": "alice", **alice}, *grants]}))
    return path


def apply(handle: ThreadedEmulatorServer, path: Path, *extra: str) -> tuple[int, str]:
    """Run `policies apply` against the emulator."""
    out = io.StringIO()
    conn = [
        "--server-url",
        handle.base_url,
        "--admin-user",
        "admin",
        "--admin-password-file",
        str(PASSWORD_FILE),
    ]
    with redirect_stdout(out):
        code = main(["apply", str(path), *extra, *conn])
    return code, out.getvalue()


def held(emu: Emulator, user: str) -> set[str]:
    """Resources a user holds now (UMA without permission); 403 = nothing."""
    token = emu.mint("nerc", {}, user=user, client=RS, lifetime=100_000)
    try:
        return {p["rsname"] for p in emu.uma("nerc", token, RS)}
    except EmulatorError as exc:
        assert exc.status == 403
        return set()


def aggregate(until: date) -> str:
    """Name of alice's aggregate for an inclusive `until` (noa is the next midnight, UTC)."""
    return f"user-alice-time-open-{(until + timedelta(days=1)).strftime('%Y%m%d')}T000000"


def permission_policies(emu: Emulator, name: str) -> list[str]:
    """Names of the policies a permission applies."""
    client = emu.realm("nerc").client_by_client_id(RS)
    assert client is not None and client.authz is not None
    perm = client.authz.policy_named(name)
    assert perm is not None
    return [client.authz.policies[p].name for p in perm.policy_ids]


def test_bounded_grant_replaces_unbounded_and_ends(keycloak: ThreadedEmulatorServer, tmp_path: Path) -> None:
    """Unbounded, then bounded: the permission names only the aggregate; an ended window grants nothing."""
    emu = keycloak.emulator
    assert apply(keycloak, write(tmp_path, {"projects": {"nerc-ocp-prod": ["team-a"]}}))[0] == 0
    assert held(emu, "alice") == {ALICE}
    until = str(TODAY + timedelta(days=30))
    code, out = apply(keycloak, write(tmp_path, {"projects": {"nerc-ocp-prod": ["team-a"]}, "until": until}))
    assert code == 0, out
    assert "+ time-policy" in out and "+ aggregate-policy" in out
    assert permission_policies(emu, ALICE_PERMISSION) == [aggregate(TODAY + timedelta(days=30))]
    assert held(emu, "alice") == {ALICE}
    assert apply(keycloak, write(tmp_path, {"projects": {"nerc-ocp-prod": ["team-a"]}, "until": until}))[
        1
    ].endswith("no changes\n")
    ended = str(TODAY - timedelta(days=1))
    assert (
        apply(keycloak, write(tmp_path, {"projects": {"nerc-ocp-prod": ["team-a"]}, "until": ended}))[0] == 0
    )
    assert permission_policies(emu, ALICE_PERMISSION) == [aggregate(TODAY - timedelta(days=1))]
    assert held(emu, "alice") == set()


def test_adopted_permission_is_not_stripped(keycloak: ThreadedEmulatorServer, tmp_path: Path) -> None:
    """A permission someone else owns keeps its policies: apply refuses (the end would mean nothing)."""
    emu = keycloak.emulator
    assert apply(keycloak, write(tmp_path, {"projects": {"nerc-ocp-prod": ["team-a"]}}))[0] == 0
    client = emu.realm("nerc").client_by_client_id(RS)
    assert client is not None and client.authz is not None
    perm = client.authz.policy_named(ALICE_PERMISSION)
    assert perm is not None
    perm.description = "created by the portal"
    until = str(TODAY + timedelta(days=30))
    code, out = apply(
        keycloak, write(tmp_path, {"projects": {"nerc-ocp-prod": ["team-a"]}, "until": until}), "--adopt"
    )
    assert code == 1 and "refusing to remove ['user-alice']" in out
    assert permission_policies(emu, ALICE_PERMISSION) == ["user-alice"]


def test_export_expresses_the_same(keycloak: ThreadedEmulatorServer, tmp_path: Path) -> None:
    """The exported realm, imported, answers like the applied one for a running and an ended grant."""
    path = write(
        tmp_path,
        {"projects": {"nerc-ocp-prod": ["team-a"]}, "until": str(TODAY - timedelta(days=2))},
    )
    out = tmp_path / "realm.json"
    assert main(["export", str(path), "-o", str(out)]) == 0
    imported = Emulator()
    imported.import_realm(json.loads(out.read_text()))
    assert apply(keycloak, path)[0] == 0
    for user in ("alice", "bob", "carol", "dave"):
        assert held(imported, user) == held(keycloak.emulator, user), user
    assert held(imported, "alice") == set()
