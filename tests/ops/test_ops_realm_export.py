"""The compose stack's Keycloak realm is exactly what `policies export demo/proxy_demo/demo.yaml` writes."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.policies.cli import main
from proxy_demo.policy import DEMO_POLICY

ROOT = Path(__file__).resolve().parents[2]


def test_committed_realm_matches_the_export(tmp_path: Path) -> None:
    """deploy/compose/keycloak/realm-nerc.json has not drifted from demo/proxy_demo/demo.yaml."""
    out = tmp_path / "realm.json"
    assert main(["export", str(DEMO_POLICY), "-o", str(out)]) == 0
    committed = json.loads((ROOT / "deploy" / "compose" / "keycloak" / "realm-nerc.json").read_text())
    assert json.loads(out.read_text()) == committed
