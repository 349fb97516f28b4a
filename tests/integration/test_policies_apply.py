"""`policies apply` against the Keycloak emulator's admin API, judged by its UMA answers (issue #7)."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from keycloak_emulator import Emulator, EmulatorError, EmulatorServer, ThreadedEmulatorServer
from proxy.policies.cli import main
from proxy.policies.loader import load
from proxy.policies.model import AccessModel, Grantee
from proxy_demo.policy import DEMO_POLICY

POLICIES = Path(__file__).resolve().parents[2] / "policies"
DEMO = DEMO_POLICY
EXAMPLE = POLICIES / "example-nerc.yaml"

ADMIN_PASSWORD_FILE = Path(tempfile.mkdtemp()) / "admin-password"
ADMIN_PASSWORD_FILE.write_text("admin")


@pytest.fixture
def keycloak() -> Iterator[ThreadedEmulatorServer]:
    """An emulator whose `nerc` realm is empty: `apply` has to create everything."""
    emu = Emulator()
    emu.import_realm({"realm": "nerc", "enabled": True})
    handle = EmulatorServer.start_in_thread(emu, host="127.0.0.1", port=0)
    yield handle
    handle.close()


def policies(handle: ThreadedEmulatorServer, *args: str) -> tuple[int, str]:
    """Run `prom-keycloak-proxy policies …` against the emulator; exit code and stdout."""
    out = io.StringIO()
    conn = [
        "--server-url",
        handle.base_url,
        "--admin-user",
        "admin",
        "--admin-password-file",
        str(ADMIN_PASSWORD_FILE),
    ]
    with redirect_stdout(out):
        code = main([*args, *conn] if args[0] == "apply" else list(args))
    return code, out.getvalue()


def expected(model: AccessModel, grantee: Grantee, groups: tuple[str, ...] = ()) -> set[str]:
    """Resource names an identity must hold: its own grants plus its groups' grants."""
    held = set(model.granted_to(grantee))
    for group in groups:
        held |= model.granted_to(Grantee("group", group))
    return held


def held(emu: Emulator, model: AccessModel, token: str) -> set[str]:
    """Every resource the token's holder gets (UMA without `permission`); 403 = nothing."""
    try:
        answer = emu.uma(model.realm, token, model.resource_server.client_id)
    except EmulatorError as exc:
        assert exc.status == 403
        return set()
    return {p["rsname"] for p in answer}


def identities(emu: Emulator, model: AccessModel) -> Iterator[tuple[str, str, set[str]]]:
    """(label, token, expected names) for every user and service-account client of the file."""
    rs = model.resource_server.client_id
    for user in model.users:
        token = emu.mint(model.realm, {}, user=user.username, client=rs)
        yield f"user {user.username}", token, expected(model, Grantee("user", user.username), user.groups)
    for client in model.clients:
        if client.service_account and client.secret:
            token = emu.client_token(model.realm, client.client_id, client.secret)["access_token"]
            yield f"client {client.client_id}", token, expected(model, Grantee("client", client.client_id))


@pytest.mark.parametrize("path", [EXAMPLE, DEMO], ids=["example-nerc", "demo"])
def test_applied_grants_equal_declared_grants(keycloak: ThreadedEmulatorServer, path: Path) -> None:
    """After `apply`, every identity × resource UMA answer is exactly what the YAML declares."""
    model = load(path)
    code, out = policies(keycloak, "apply", str(path))
    assert code == 0, out
    emu = keycloak.emulator
    for label, token, names in identities(emu, model):
        assert held(emu, model, token) == names, label
        for resource in model.resource_names():
            try:
                granted = bool(
                    emu.uma(model.realm, token, model.resource_server.client_id, [f"{resource}#GET"])
                )
            except EmulatorError as exc:
                assert exc.status == 403
                granted = False
            assert granted == (resource in names), (label, resource)


def test_second_apply_reports_no_change(keycloak: ThreadedEmulatorServer) -> None:
    """`apply` is idempotent: the second run finds nothing to do and says so."""
    assert policies(keycloak, "apply", str(DEMO))[0] == 0
    code, out = policies(keycloak, "apply", str(DEMO))
    assert (code, out.strip()) == (0, "realm nerc: no changes")


def test_dry_run_prints_the_diff_and_changes_nothing(keycloak: ThreadedEmulatorServer) -> None:
    """`--dry-run` lists the changes (`+ resource …`) and leaves the realm untouched."""
    code, out = policies(keycloak, "apply", str(DEMO), "--dry-run")
    assert code == 0
    assert "+ resource HUB-moc\n" in out and "+ permission HUB-moc-GET-user-dave-permission\n" in out
    assert "dry run:" in out
    assert keycloak.emulator.realm("nerc").client_by_client_id("prom-keycloak-proxy") is None
    assert policies(keycloak, "apply", str(DEMO), "--dry-run")[1] == out


def test_prune_removes_exactly_the_deleted_grant(keycloak: ThreadedEmulatorServer, tmp_path: Path) -> None:
    """Deleting carol's project grant: plain apply keeps it, `--prune` deletes exactly that permission."""
    assert policies(keycloak, "apply", str(DEMO))[0] == 0
    edited = tmp_path / "demo.yaml"
    text = DEMO.read_text()
    assert "    projects: {nerc-ocp-test: [team-b]}\n" in text
    edited.write_text(text.replace("    projects: {nerc-ocp-test: [team-b]}\n", ""))
    assert policies(keycloak, "apply", str(edited)) == (0, "realm nerc: no changes\n")
    code, out = policies(keycloak, "apply", str(edited), "--prune")
    assert code == 0
    changes = [line for line in out.splitlines() if line[:2] in ("+ ", "~ ", "- ")]
    assert changes == ["- permission HUB-moc-CLUSTER-nerc-ocp-test-PROJECT-team-b-GET-user-carol-permission"]
    emu = keycloak.emulator
    carol = emu.password_token("nerc", "carol", "carol-password")["access_token"]
    assert held(emu, load(edited), carol) == {"HUB-moc-CLUSTER-nerc-ocp-prod"}


def portal_objects(handle: ThreadedEmulatorServer) -> None:
    """What the telemetry portal provisions for one project, unmarked, plus a tenant policy."""
    from proxy.policies.gateway import Gateway, connect

    gw = Gateway(connect(handle.base_url, "nerc", "admin", "admin"))
    cid = gw.create_client(
        {
            "clientId": "prom-keycloak-proxy",
            "secret": "s",
            "authorizationServicesEnabled": True,
            "serviceAccountsEnabled": True,
        }
    )
    gw.update_server(cid, {"decisionStrategy": "AFFIRMATIVE", "policyEnforcementMode": "ENFORCING"})
    gw.create_scope(cid, "GET")
    name = "HUB-moc-CLUSTER-nerc-ocp-prod-PROJECT-team-a"
    gw.create_resource(cid, {"name": name, "scopes": [{"name": "GET"}]})
    gw.create_group({"name": f"{name}-GET"})
    gw.create_group({"name": "tenant-a-GET"})
    for group in (f"{name}-GET", "tenant-a-GET"):
        gw.create_policy(cid, "policy/group", {"name": group, "groups": [{"path": f"/{group}"}]})
    gw.create_policy(
        cid,
        "permission/scope",
        {
            "name": f"{name}-GET-permission",
            "decisionStrategy": "AFFIRMATIVE",
            "resources": [name],
            "scopes": ["GET"],
            "policies": [f"{name}-GET", "tenant-a-GET"],
        },
    )
    gw.create_policy(
        cid,
        "permission/scope",
        {
            "name": "portal-only-permission",
            "resources": [name],
            "scopes": ["GET"],
            "policies": ["tenant-a-GET"],
        },
    )


def test_portal_objects_need_adopt(keycloak: ThreadedEmulatorServer) -> None:
    """docs/policies.md: same-named unmarked objects are conflicts; nothing changes without `--adopt`."""
    portal_objects(keycloak)
    before = len(keycloak.emulator.realm("nerc").groups)
    code, out = policies(keycloak, "apply", str(DEMO))
    assert code == 1
    assert "conflict: resource HUB-moc-CLUSTER-nerc-ocp-prod-PROJECT-team-a exists and is not managed" in out
    assert len(keycloak.emulator.realm("nerc").groups) == before


def test_adopt_merges_policy_lists_and_prune_spares_unmarked(keycloak: ThreadedEmulatorServer) -> None:
    """`--adopt` marks portal objects, keeps their tenant policy; `--prune` deletes nothing unmarked."""
    portal_objects(keycloak)
    code, out = policies(keycloak, "apply", str(DEMO), "--adopt", "--prune")
    assert code == 0, out
    client = keycloak.emulator.realm("nerc").client_by_client_id("prom-keycloak-proxy")
    assert client is not None and client.authz is not None
    rs = client.authz
    perm = rs.policy_named("HUB-moc-CLUSTER-nerc-ocp-prod-PROJECT-team-a-GET-permission")
    assert perm is not None
    assert {rs.policies[p].name for p in perm.policy_ids} == {
        "HUB-moc-CLUSTER-nerc-ocp-prod-PROJECT-team-a-GET",
        "tenant-a-GET",
    }
    assert rs.policy_named("portal-only-permission") is not None
    assert rs.policy_named("tenant-a-GET") is not None
    assert policies(keycloak, "apply", str(DEMO), "--adopt", "--prune")[1] == "realm nerc: no changes\n"


LONG_NAMESPACE = "n" * 30 + "-" + "s" * 32  # 63 characters, Kubernetes' longest namespace name


def test_apply_of_a_63_character_namespace_succeeds(keycloak: ThreadedEmulatorServer, tmp_path: Path) -> None:
    """Issue #17: descriptions naming a ~100-character resource stay within Keycloak's 255-character
    columns (the emulator answers 500 beyond, as Keycloak does), so the project is fully applied."""
    assert len(LONG_NAMESPACE) == 63
    path = tmp_path / "long.yaml"
    path.write_text(
        DEMO.read_text()
        .replace(
            "projects: [team-a, team-b, team-c]", f"projects: [team-a, team-b, team-c, {LONG_NAMESPACE}]", 1
        )
        .replace(
            "    projects: {nerc-ocp-prod: [team-a]}",
            f"    projects: {{nerc-ocp-prod: [team-a, {LONG_NAMESPACE}]}}",
        )
    )
    code, out = policies(keycloak, "apply", str(path))
    assert code == 0, out
    emu, model = keycloak.emulator, load(path)
    resource = f"HUB-moc-CLUSTER-nerc-ocp-prod-PROJECT-{LONG_NAMESPACE}"
    alice = emu.password_token("nerc", "alice", "alice-password")["access_token"]
    assert resource in held(emu, model, alice)
    client = emu.realm("nerc").client_by_client_id("prom-keycloak-proxy")
    assert client is not None and client.authz is not None
    assert all(len(p.description or "") <= 255 for p in client.authz.policies.values())
    assert max(len(p.description or "") for p in client.authz.policies.values()) == 255


def test_a_users_resource_named_like_a_managed_one_is_left_alone(keycloak: ThreadedEmulatorServer) -> None:
    """Server-owned is decided by owner id: a resource of a user *named like the client* (Keycloak
    shows the owner's username as `owner.name`) with a managed resource's name is not adopted."""
    assert policies(keycloak, "apply", str(DEMO))[0] == 0
    emu = keycloak.emulator
    from keycloak_emulator.realm_import import add_user

    add_user(emu.realm("nerc"), {"username": "prom-keycloak-proxy", "email": "x@example.org"})
    stray = emu.add_user_resource("nerc", "prom-keycloak-proxy", "prom-keycloak-proxy", "HUB-moc")
    code, out = policies(keycloak, "apply", str(DEMO), "--adopt", "--prune")
    assert (code, out.strip()) == (0, "realm nerc: no changes")
    client = emu.realm("nerc").client_by_client_id("prom-keycloak-proxy")
    assert client is not None and client.authz is not None
    assert client.authz.resources[stray].attributes == {}
