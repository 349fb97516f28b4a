"""The UMA grant answers as Keycloak does; each test names the reference section it reproduces.

"reference" is the Keycloak UMA protocol notes the emulator was built from (summarised in
docs/keycloak.md); ATS = AuthorizationTokenService.java,
PGT = PermissionGrantType.java, DPC = DecisionPermissionCollector.java.
"""

from __future__ import annotations

import jwt
import pytest

from keycloak_emulator import Emulator, EmulatorError
from tests.unit.emulator.support import DEMO, RS, UMA, Keycloak, names

PROD = "HUB-moc-CLUSTER-nerc-ocp-prod"
TEST = "HUB-moc-CLUSTER-nerc-ocp-test"
PROD_A = f"{PROD}-PROJECT-team-a"
TEST_A = f"{TEST}-PROJECT-team-a"
TEST_B = f"{TEST}-PROJECT-team-b"


async def test_partial_grant_lists_only_granted_resources(kc: Keycloak) -> None:
    """§1.6 / ATS authorize(): some granted → 200 with only those, as {rsid, rsname, scopes}."""
    answer = await kc.uma(kc.user_token("carol"), "HUB#GET", f"{PROD}#GET", f"{TEST}#GET", f"{TEST_B}#GET")
    assert answer.status == 200
    assert names(answer) == [PROD, TEST_B]
    assert all(p["scopes"] == ["GET"] and len(p["rsid"]) == 36 for p in answer.body)


async def test_nothing_granted_is_403_not_authorized(kc: Keycloak) -> None:
    """§1.6/§1.7 / ATS isGranted(): none granted → 403 access_denied / not_authorized."""
    answer = await kc.uma(kc.user_token("eve"), "HUB#GET", f"{PROD}#GET")
    assert (answer.status, answer.body) == (
        403,
        {"error": "access_denied", "error_description": "not_authorized"},
    )


async def test_unknown_first_name_fails_whole_call(kc: Keycloak) -> None:
    """§1.4 rule 4 / issue keycloak#42437: unknown name first → 400 invalid_resource."""
    answer = await kc.uma(kc.user_token("dave"), "HUB-moc-CLUSTER-nope#GET", "HUB-moc#GET")
    assert answer.status == 400
    assert answer.body == {
        "error": "invalid_resource",
        "error_description": "Resource with id [HUB-moc-CLUSTER-nope] does not exist.",
    }


async def test_unknown_name_after_a_resolved_one_is_skipped(kc: Keycloak) -> None:
    """§1.4 rule 4: once something resolved, later unknown names are silently ignored (§3.5)."""
    answer = await kc.uma(kc.user_token("carol"), "HUB#GET", "HUB-moc-CLUSTER-nope#GET", f"{PROD}#GET")
    assert (answer.status, names(answer)) == (200, [PROD])


async def test_existing_resource_without_the_scope_counts_as_unknown(kc: Keycloak, emu: Emulator) -> None:
    """§1.4 step 3–4: a first resource lacking the requested scope → invalid_resource too."""
    rs = emu.realm("nerc").client_by_client_id(RS)
    assert rs is not None and rs.authz is not None
    from keycloak_emulator.store import Scope

    rs.authz.scopes["patch-id"] = Scope("patch-id", "PATCH")
    answer = await kc.uma(kc.user_token("dave"), "HUB#PATCH", "HUB-moc#GET")
    assert answer.status == 400
    assert answer.body["error_description"] == "Resource with id [HUB] does not exist."


async def test_unknown_scope_is_invalid_scope(kc: Keycloak) -> None:
    """§1.4 step 1 / §3.5: no requested scope exists → 400 invalid_scope naming the scopes."""
    answer = await kc.uma(kc.user_token("dave"), "HUB#PATCH")
    assert (answer.status, answer.body) == (
        400,
        {"error": "invalid_scope", "error_description": "One of the given scopes [PATCH] is invalid"},
    )


async def test_no_permission_parameter_returns_everything_held(kc: Keycloak) -> None:
    """§1.6 / ATS evaluateAllPermissions(): no `permission` → every held resource, store order."""
    answer = await kc.uma(kc.researcher_token())
    assert (answer.status, names(answer)) == (200, [PROD_A, TEST_A])


async def test_scope_only_permission_evaluates_every_resource_with_the_scope(kc: Keycloak) -> None:
    """§1.3: `permission=#GET` gives rsid "" → every resource with scope GET is evaluated."""
    answer = await kc.uma(kc.user_token("carol"), "#GET")
    assert (answer.status, names(answer)) == (200, [PROD, TEST_B])


async def test_decision_mode_is_true_when_any_permission_is_granted(kc: Keycloak) -> None:
    """§1.6 / ATS isGranted() / issue keycloak#30694: decision is true though HUB is denied."""
    answer = await kc.uma(kc.user_token("carol"), "HUB#GET", f"{PROD}#GET", response_mode="decision")
    assert (answer.status, answer.body) == (200, {"result": True})


async def test_invalid_response_mode_checked_only_after_a_grant(kc: Keycloak) -> None:
    """§1.2 `response_mode`: unknown mode → 400 if something is granted, else the 403 first."""
    granted = await kc.uma(kc.user_token("dave"), "HUB-moc#GET", response_mode="bogus")
    denied = await kc.uma(kc.user_token("eve"), "HUB-moc#GET", response_mode="bogus")
    assert (granted.status, granted.body["error_description"]) == (400, "Invalid response_mode")
    assert (denied.status, denied.body["error_description"]) == (403, "not_authorized")


async def test_audience_errors(kc: Keycloak) -> None:
    """§1.2 `audience` / ATS getResourceServer(): missing, unknown, and non-authz audiences."""
    token = kc.user_token("dave")
    missing = await kc.post(
        kc.token_url,
        [("grant_type", UMA), ("permission", "HUB-moc#GET")],
        {"Authorization": f"Bearer {token}"},
    )
    unknown = await kc.uma(token, "HUB-moc#GET", audience="nope")
    no_authz = await kc.uma(token, "HUB-moc#GET", audience="grafana")
    assert (missing.status, missing.body["error_description"]) == (400, "You must provide the issuedFor")
    assert unknown.body == {
        "error": "invalid_request",
        "error_description": "Unknown resource server id: [nope]",
    }
    assert no_authz.body["error_description"] == "Client does not support permissions"


async def test_expired_or_foreign_bearer_is_400_invalid_grant(kc: Keycloak, emu: Emulator) -> None:
    """§0.0 / PR keycloak#46528 (`changes-26_6_0.adoc`): an invalid bearer → 400 invalid_grant."""
    from keycloak_emulator.keys import generate_key

    expired = emu.mint("nerc", {}, user="dave", lifetime=-10)
    forged = emu.mint("nerc", {}, user="dave", key=generate_key().private_key)
    for token in (expired, forged, "not-a-jwt"):
        answer = await kc.uma(token, "HUB-moc#GET")
        assert (answer.status, answer.body) == (
            400,
            {"error": "invalid_grant", "error_description": "Invalid bearer token"},
        )


def test_invalid_bearer_was_401_before_26_6() -> None:
    """§1.1 / PGT before 26.6.0: an invalid bearer → 401 invalid_grant "Invalid bearer token"."""
    emu = Emulator.from_files([DEMO], keycloak_version="24")
    token = emu.password_token("nerc", "dave", "dave-password")["access_token"]
    emu.set_user_enabled("nerc", "dave", False)
    with pytest.raises(EmulatorError) as caught:
        emu.uma("nerc", token, RS, ["HUB-moc#GET"])
    assert (caught.value.status, caught.value.body) == (
        401,
        {"error": "invalid_grant", "error_description": "Invalid bearer token"},
    )


async def test_aud_is_not_checked_on_the_uma_route(kc: Keycloak, emu: Emulator) -> None:
    """§1.8 / issue keycloak#30779: the bearer need not carry the resource server in `aud`."""
    token = emu.mint("nerc", {"aud": "account"}, user="dave")
    assert names(await kc.uma(token, "HUB-moc#GET")) == ["HUB-moc"]


async def test_client_policy_matches_the_tokens_azp(kc: Keycloak, emu: Emulator) -> None:
    """§0.5 / §4.3 ClientPolicyProvider: a user token issued to the researcher client matches."""
    as_researcher = emu.mint("nerc", {}, user="eve", client="researcher-team-a")
    via_grafana = kc.user_token("eve")
    assert names(await kc.uma(as_researcher, f"{TEST_A}#GET")) == [TEST_A]
    assert (await kc.uma(via_grafana, f"{TEST_A}#GET")).status == 403


async def test_without_bearer_client_credentials_evaluate_the_service_account(kc: Keycloak) -> None:
    """§1.1 step 2 / PGT: no bearer → client auth, identity = the client's service account."""
    form = [
        ("grant_type", UMA),
        ("audience", RS),
        ("response_mode", "permissions"),
        ("client_id", "researcher-team-a"),
        ("client_secret", "researcher-team-a-secret"),
    ]
    answer = await kc.post(kc.token_url, form)
    assert (answer.status, names(answer)) == (200, [PROD_A, TEST_A])


async def test_response_include_resource_name_false_drops_rsname(kc: Keycloak) -> None:
    """§1.2 `response_include_resource_name`: false → entries without `rsname`."""
    answer = await kc.uma(kc.user_token("dave"), "HUB-moc#GET", response_include_resource_name="false")
    assert answer.status == 200 and set(answer.body[0]) == {"rsid", "scopes"}


async def test_without_response_mode_an_rpt_is_issued(kc: Keycloak, emu: Emulator) -> None:
    """§1.5: no response_mode → RPT with `authorization.permissions` and the RS added to aud."""
    answer = await kc.uma(kc.user_token("bob"), f"{TEST}#GET", response_mode="")
    claims = jwt.decode(answer.body["access_token"], options={"verify_signature": False})
    assert answer.body["token_type"] == "Bearer" and answer.body["upgraded"] is False
    assert [p["rsname"] for p in claims["authorization"]["permissions"]] == [TEST]
    assert RS in claims["aud"]


async def test_repeated_permission_merges_and_ids_resolve(kc: Keycloak) -> None:
    """§1.3 addPermission merges repeats; §1.4 a name with `-` is first tried as a resource id."""
    first = await kc.uma(kc.user_token("bob"), f"{TEST}#GET")
    rsid = first.body[0]["rsid"]
    again = await kc.uma(kc.user_token("bob"), f"{rsid}#GET", f"{TEST}#GET")
    assert [p["rsid"] for p in again.body] == [rsid]


async def test_a_name_resolves_to_the_callers_own_resource_and_the_servers(
    kc: Keycloak, emu: Emulator
) -> None:
    """§0.0 / ATS `resolveResourcePermission`: the identity's own `HUB-moc` AND the server's are
    both evaluated (no shadowing); the owner holds hers, the server's still needs a permission."""
    eve_own = emu.add_user_resource("nerc", RS, "eve", "HUB-moc")
    dave_own = emu.add_user_resource("nerc", RS, "dave", "HUB-moc")
    eve = await kc.uma(kc.user_token("eve"), "HUB-moc#GET")
    dave = await kc.uma(kc.user_token("dave"), "HUB-moc#GET")
    server_id = next(p["rsid"] for p in dave.body if p["rsid"] != dave_own)
    assert eve.body == [{"rsid": eve_own, "rsname": "HUB-moc", "scopes": ["GET"]}]
    assert [p["rsid"] for p in dave.body] == [dave_own, server_id]
    assert emu.stats("nerc")["evaluated"] == 4


async def test_disabled_user_and_revoked_session_are_rejected(kc: Keycloak, emu: Emulator) -> None:
    """§0.0 (26.6.0+): user disabled or session gone → 400 invalid_grant "Invalid bearer token"."""
    dave, bob = kc.user_token("dave"), kc.user_token("bob")
    emu.set_user_enabled("nerc", "dave", False)
    emu.revoke("nerc", bob)
    for answer in (await kc.uma(dave, "HUB-moc#GET"), await kc.uma(bob, f"{TEST}#GET")):
        assert (answer.status, answer.body["error"]) == (400, "invalid_grant")
