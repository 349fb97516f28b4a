"""`policies export` writes a realm import the emulator (standing in for Keycloak) imports faithfully."""

from __future__ import annotations

import io
import json
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from keycloak_emulator import Emulator, EmulatorError, EmulatorServer
from proxy.policies.cli import main
from proxy.policies.loader import load
from proxy_demo.policy import DEMO_POLICY

POLICIES = Path(__file__).resolve().parents[2] / "policies"

ADMIN_PASSWORD_FILE = Path(tempfile.mkdtemp()) / "admin-password"
ADMIN_PASSWORD_FILE.write_text("admin")


def holdings(emu: Emulator, token: str) -> set[str]:
    """Resource names granted to a token in the `nerc` realm."""
    try:
        return {p["rsname"] for p in emu.uma("nerc", token, "prom-keycloak-proxy")}
    except EmulatorError as exc:
        assert exc.status == 403
        return set()


@pytest.mark.parametrize("path", [DEMO_POLICY, POLICIES / "example-nerc.yaml"], ids=["demo", "example-nerc"])
def test_export_round_trips_through_import(tmp_path: Path, path: Path) -> None:
    """Imported export gives the same UMA answers, and `apply` on it then finds no change."""
    out = tmp_path / "realm.json"
    assert main(["export", str(path), "-o", str(out)]) == 0
    imported = Emulator()
    imported.import_realm(json.loads(out.read_text()))
    loaded = Emulator.from_files([path])
    model = load(path)
    for user in model.users:
        tokens = [
            e.mint("nerc", {}, user=user.username, client="prom-keycloak-proxy") for e in (imported, loaded)
        ]
        assert holdings(imported, tokens[0]) == holdings(loaded, tokens[1])
    handle = EmulatorServer.start_in_thread(imported)
    try:
        buf = io.StringIO()
        with redirect_stdout(buf):
            code = main(
                [
                    "apply",
                    str(path),
                    "--server-url",
                    handle.base_url,
                    "--admin-user",
                    "admin",
                    "--admin-password-file",
                    str(ADMIN_PASSWORD_FILE),
                ]
            )
        assert (code, buf.getvalue()) == (0, "realm nerc: no changes\n")
    finally:
        handle.close()


def test_export_writes_json_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Without `-o` the realm JSON goes to stdout, permissions listed after their policies (§3.3)."""
    assert main(["export", str(DEMO_POLICY)]) == 0
    realm = json.loads(capsys.readouterr().out)
    settings = realm["clients"][0]["authorizationSettings"]
    kinds = [p["type"] for p in settings["policies"]]
    first = kinds.index("scope")
    assert "scope" not in kinds[:first] and set(kinds[first:]) == {"scope"}
    assert settings["decisionStrategy"] == "AFFIRMATIVE"
