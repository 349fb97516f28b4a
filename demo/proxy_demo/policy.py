"""Where the demo's access model lives: package data, so it is found from an installed package too."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEMO_POLICY = Path(__file__).resolve().parent / "demo.yaml"
# The second hub of the several-hubs demo: same realm and resource server, other data and grants.
SECOND_HUB_POLICY = Path(__file__).resolve().parent / "demo-innabox.yaml"
HUB_POLICIES = (DEMO_POLICY, SECOND_HUB_POLICY)


def _merge_named(into: list[dict[str, Any]], extra: Iterable[dict[str, Any]], key: str) -> None:
    """Append the entries of `extra` whose `key` is not in `into` yet (first file wins)."""
    seen = {item.get(key) for item in into}
    for item in extra:
        if item.get(key) not in seen:
            into.append(item)
            seen.add(item.get(key))


def merged_realm(paths: Iterable[Path]) -> dict[str, Any]:
    """One realm import from several hubs' policies files of the same realm and resource server.

    Users, groups, clients, resources and policies are united by name (the first file's wins);
    the policies model describes one hub per file, Keycloak holds every hub in one realm.
    """
    from proxy.policies.loader import load
    from proxy.policies.realm_json import realm_import

    reps = [realm_import(load(Path(path))) for path in paths]
    merged = reps[0]
    server_id = merged["clients"][0]["clientId"]
    settings = merged["clients"][0]["authorizationSettings"]
    for rep in reps[1:]:
        if rep["realm"] != merged["realm"] or rep["clients"][0]["clientId"] != server_id:
            raise ValueError("hub policies files must share the realm and the resource-server client")
        for section in ("users", "groups"):
            _merge_named(merged[section], rep[section], "username" if section == "users" else "name")
        _merge_named(merged["clients"], rep["clients"][1:], "clientId")
        other = rep["clients"][0]["authorizationSettings"]
        _merge_named(settings["resources"], other["resources"], "name")
        # Keycloak wants a permission's policies to exist before it: policies first, then permissions.
        policies = [p for p in settings["policies"] if p["type"] != "scope"]
        permissions = [p for p in settings["policies"] if p["type"] == "scope"]
        _merge_named(policies, (p for p in other["policies"] if p["type"] != "scope"), "name")
        _merge_named(permissions, (p for p in other["policies"] if p["type"] == "scope"), "name")
        settings["policies"] = policies + permissions
    return merged
