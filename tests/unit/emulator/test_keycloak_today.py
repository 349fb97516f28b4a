"""Keycloak as it is today (26.6+): one test per row of the reference note's corrections (§0.0).

Each docstring names the Keycloak source or guide the behaviour comes from. Rows already covered
elsewhere: invalid bearer → 400 (`test_uma_grant.py`), password grant → 400
(`test_token_endpoint.py`), own *and* server resource (`test_uma_grant.py`).
"""

from __future__ import annotations

import base64
from unittest import mock
from urllib.parse import quote_plus

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from keycloak_emulator import Emulator, EmulatorServer
from keycloak_emulator.realm_import import add_client, ensure_service_account
from keycloak_emulator.store import Group, GroupRef, Policy, new_id
from tests.unit.emulator.support import DEMO, RS, Keycloak, names

INTROSPECT = "/realms/nerc/protocol/openid-connect/token/introspect"
RESOURCE_SET = "/realms/nerc/authz/protection/resource_set"
RS_AUTH = [("client_id", RS), ("client_secret", "prom-keycloak-proxy-secret")]
ODD_SECRET = "s3+cr%t:with:colons"


def pat(kc: Keycloak) -> dict[str, str]:
    """The resource server's own token (PAT) as a header."""
    token = kc.emu.client_token("nerc", RS, "prom-keycloak-proxy-secret")["access_token"]
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: id and secret form-urlencoded, then `id:secret` in base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def add_basic_only_client(emu: Emulator, client_id: str = "script+a:b%c") -> str:
    """A confidential client registered with `token_endpoint_auth_method=client_secret_basic`."""
    realm = emu.realm("nerc")
    client = add_client(
        realm,
        {
            "clientId": client_id,
            "secret": ODD_SECRET,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "attributes": {"token.endpoint.auth.method": "client_secret_basic"},
        },
    )
    ensure_service_account(realm, client)
    return client_id


async def test_introspection_needs_the_caller_in_aud(kc: Keycloak, emu: Emulator) -> None:
    """`changes-26_6_2.adoc` "Token introspection now validates audience claim" (PR #51681):
    a token whose `aud` lacks the introspecting client is `{"active": false}`; with the audience
    mapper's `aud` it is active."""
    without = emu.mint("nerc", {"aud": "account"}, user="alice")
    with_mapper = kc.user_token("alice")
    assert (await kc.post(INTROSPECT, [("token", without), *RS_AUTH])).body == {"active": False}
    assert (await kc.post(INTROSPECT, [("token", with_mapper), *RS_AUTH])).body["active"] is True


@pytest.mark.parametrize(
    ("options", "active"),
    [
        ({"keycloak_version": "26.6.1"}, True),
        ({"introspection_audience_check": False}, True),
        ({}, False),
    ],
)
def test_introspection_audience_check_by_version_and_server_option(
    options: dict[str, object], active: bool
) -> None:
    """Before 26.6.2, or with `allow-token-introspection-without-audience-check`, no aud check."""
    from keycloak_emulator.emulator import Emulator as Emu
    from keycloak_emulator.endpoints import introspect
    from keycloak_emulator.form import Form
    from keycloak_emulator.grants import TokenCall

    emu = Emu.from_files([DEMO], **options)
    token = emu.mint("nerc", {"aud": "account"}, user="alice")
    call: TokenCall = emu.call("nerc", [("token", token), *RS_AUTH])
    assert isinstance(call.form, Form)
    assert introspect(call)["active"] is active


async def test_scope_only_permission_evaluates_every_owners_resources(kc: Keycloak, emu: Emulator) -> None:
    """`Permission.getResourceId()` "" → `resolveScopePermissions` → `findByScopes` (named query
    `findResourceIdByScope`): `#GET` evaluates every resource with GET, of every owner."""
    eve_own = emu.add_user_resource("nerc", RS, "eve", "eve-notebook")
    rs = emu.realm("nerc").client_by_client_id(RS)
    assert rs is not None and rs.authz is not None
    total = len(rs.authz.resources)
    carol = await kc.uma(kc.user_token("carol"), "#GET")
    assert emu.stats("nerc")["evaluated"] == total
    eve = await kc.uma(kc.user_token("eve"), "#GET")
    assert "eve-notebook" not in names(carol)
    assert [p["rsid"] for p in eve.body] == [eve_own]


def test_group_extend_children_is_a_plain_prefix(emu: Emulator) -> None:
    """`GroupPolicyProvider.evaluate`: `group.equals(path) || (extendChildren &&
    group.startsWith(path))` — `/team-a` with children also matches `/team-a-interns`."""
    realm = emu.realm("nerc")
    sibling = Group(new_id(), "team-a-interns")
    realm.groups[sibling.id] = sibling
    eve = realm.user_by_username("eve")
    team_a = realm.group_by_path("/team-a")
    client = realm.client_by_client_id(RS)
    assert eve is not None and team_a is not None and client is not None and client.authz is not None
    eve.group_ids = [sibling.id]
    rs = client.authz
    policy = Policy(new_id(), "team-a-tree", "group", groups=[GroupRef(team_a.id, True)])
    rs.policies[policy.id] = policy
    perm = rs.policy_named("HUB-GET-permission")
    assert perm is not None
    perm.policy_ids.append(policy.id)
    token = emu.password_token("nerc", "eve", "eve-password")["access_token"]
    assert [p["rsname"] for p in emu.uma("nerc", token, RS, ["HUB#GET"])] == ["HUB"]


async def test_protection_api_exact_name_is_case_insensitive(kc: Keycloak) -> None:
    """JPA `EXACT_NAME` predicate: `lower(name) = lower(value)`."""
    upper = await kc.get(f"{RESOURCE_SET}?name=hub-MOC&exactName=true", pat(kc))
    exact = await kc.get(f"{RESOURCE_SET}?name=HUB-moc&exactName=true", pat(kc))
    assert upper.body == exact.body and len(exact.body) == 1


async def test_protection_api_owner_and_scope_filters(kc: Keycloak, emu: Emulator) -> None:
    """`ResourceSetService.find`: `owner=<clientId>` → the client's id, else a username → the
    user's id; `scope` is a name LIKE filter (no match → [])."""
    eve_own = emu.add_user_resource("nerc", RS, "eve", "HUB-moc")
    by_server = await kc.get(f"{RESOURCE_SET}?name=HUB-moc&exactName=true&owner={RS}", pat(kc))
    by_user = await kc.get(f"{RESOURCE_SET}?name=HUB-moc&exactName=true&owner=eve", pat(kc))
    anyone = await kc.get(f"{RESOURCE_SET}?name=HUB-moc&exactName=true", pat(kc))
    no_scope = await kc.get(f"{RESOURCE_SET}?name=HUB-moc&exactName=true&scope=PATCH", pat(kc))
    like = await kc.get(f"{RESOURCE_SET}?name=HUB-moc&exactName=true&scope=ge&owner={RS}", pat(kc))
    assert by_user.body == [eve_own] and eve_own not in by_server.body and len(by_server.body) == 1
    assert sorted(anyone.body) == sorted([*by_server.body, eve_own])
    assert no_scope.body == [] and like.body == by_server.body


async def test_protection_api_deep_owner_is_the_username_sorted_and_paged(
    kc: Keycloak, emu: Emulator
) -> None:
    """`ModelToRepresentation`: a user-owned resource's `owner.name` is the real username;
    results are sorted by name and `max` defaults to 100."""
    emu.add_user_resource("nerc", RS, "eve", "HUB-moc")
    deep = await kc.get(f"{RESOURCE_SET}?name=HUB-moc&exactName=true&deep=true", pat(kc))
    owners = sorted(r["owner"]["name"] for r in deep.body)
    assert owners == sorted(["eve", RS])
    for i in range(120):
        emu.add_user_resource("nerc", RS, "eve", f"zz-{i:03}")
    listed = await kc.get(f"{RESOURCE_SET}?name=zz-&deep=true", pat(kc))
    assert [r["name"] for r in listed.body] == [f"zz-{i:03}" for i in range(100)]


async def test_basic_only_client_accepts_the_form_urlencoded_header_only(kc: Keycloak, emu: Emulator) -> None:
    """`changes-26_6_0.adoc` "Client secret authentication method": a `client_secret_basic`
    client accepts only the Basic header, whose id and secret are form-urlencoded (RFC 6749
    §2.3.1; `BasicAuthHelper.RFC6749`) — `+`, `%` and `:` included."""
    client_id = add_basic_only_client(emu)
    grant = [("grant_type", "client_credentials")]
    ok = await kc.post(kc.token_url, grant, basic(client_id, ODD_SECRET))
    form = await kc.post(kc.token_url, [*grant, ("client_id", client_id), ("client_secret", ODD_SECRET)])
    raw = base64.b64encode(f"{client_id}:{ODD_SECRET}".encode()).decode()
    unencoded = await kc.post(kc.token_url, grant, {"Authorization": f"Basic {raw}"})
    assert (
        ok.status == 200
        and jwt.decode(ok.body["access_token"], options={"verify_signature": False})["azp"] == client_id
    )
    assert (form.status, form.body["error"]) == (401, "unauthorized_client")
    assert unencoded.status == 401  # a raw `+` decodes to a space


def test_secret_method_was_not_enforced_before_26_6() -> None:
    """Before 26.6.0 every confidential client accepted the form post as well."""
    emu = Emulator.from_files([DEMO], keycloak_version="26.5")
    client_id = add_basic_only_client(emu)
    assert emu.client_token("nerc", client_id, ODD_SECRET)["token_type"] == "Bearer"


async def test_over_long_description_is_a_500_like_the_database(kc: Keycloak, emu: Emulator) -> None:
    """`jpa-changelog-authz-2.0.0.xml`: `RESOURCE_SERVER_POLICY.DESCRIPTION` is VARCHAR(255);
    a longer value makes the admin API answer 500 and stores nothing; 255 characters are fine."""
    admin = emu.password_token("master", "admin", "admin")["access_token"]
    client = emu.realm("nerc").client_by_client_id(RS)
    assert client is not None
    url = f"/admin/realms/nerc/clients/{client.id}/authz/resource-server/policy/client"
    headers = {"Authorization": f"Bearer {admin}"}
    body = {"name": "long", "clients": [RS]}
    async with kc.http.post(url, json={**body, "description": "x" * 256}, headers=headers) as too_long:
        assert too_long.status == 500
    async with kc.http.post(url, json={**body, "description": "x" * 255}, headers=headers) as fits:
        assert fits.status == 201


def test_realm_import_with_an_over_long_name_fails(emu: Emulator) -> None:
    """The same columns make a realm import fail (docs/keycloak.md)."""
    from keycloak_emulator.errors import KeycloakError

    rep = {
        "realm": "long",
        "clients": [
            {
                "clientId": "rs",
                "authorizationServicesEnabled": True,
                "authorizationSettings": {"resources": [{"name": "r" * 256}]},
            }
        ],
    }
    with pytest.raises(KeycloakError) as caught:
        emu.import_realm(rep)
    assert caught.value.status == 500


async def test_jwks_publishes_the_enc_key_and_certificates(kc: Keycloak) -> None:
    """Default `rsa-enc-generated` provider: an `RSA-OAEP` key with `use: enc`, and `x5c`,
    `x5t`, `x5t#S256` on every key; the certificate holds the same public key."""
    keys = (await kc.get("/realms/nerc/protocol/openid-connect/certs")).body["keys"]
    assert [(k["alg"], k["use"]) for k in keys] == [("RS256", "sig"), ("RSA-OAEP", "enc")]
    for key in keys:
        cert_key = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0])).public_key()
        assert isinstance(cert_key, rsa.RSAPublicKey)
        public = jwt.PyJWK({k: v for k, v in key.items() if k != "alg"}, "RS256").key
        assert cert_key.public_numbers() == public.public_numbers()
        assert {"x5t", "x5t#S256"} <= set(key)
    assert len(jwt.PyJWKSet.from_dict({"keys": keys}).keys) == 1  # PyJWT skips the enc key


async def test_tokens_are_typed_bearer(kc: Keycloak) -> None:
    """Access tokens carry `typ: Bearer` (Keycloak's own bearer check requires it, docs/keycloak.md)."""
    claims = jwt.decode(kc.user_token("alice"), options={"verify_signature": False})
    assert claims["typ"] == "Bearer"


async def test_dynamic_hostname_issuer_follows_the_request_host() -> None:
    """Hostname v2 without a fixed `hostname`: `iss` follows each request's host, so back-channel
    discovery and browser tokens can disagree (docs/keycloak.md "issuer")."""
    import aiohttp

    emu = Emulator.from_files([DEMO], dynamic_hostname=True)
    server = EmulatorServer(emu, host="127.0.0.1", port=0)
    await server.start()
    try:
        path = "/realms/nerc/.well-known/openid-configuration"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.base_url}{path}") as a:
                inside = (await a.json())["issuer"]
            async with http.get(f"{server.base_url}{path}", headers={"Host": "sso.example.org"}) as b:
                outside = (await b.json())["issuer"]
    finally:
        await server.stop()
    assert inside == f"{server.base_url}/realms/nerc"
    assert outside == "http://sso.example.org/realms/nerc"


async def test_known_regressions_can_be_injected(kc: Keycloak, emu: Emulator) -> None:
    """keycloak#51250 (26.7.0): valid user tokens refused with `400 unauthorized_client
    "Invalid identity"`; the fault carries Keycloak's body so the proxy's log can be checked."""
    emu.inject_fault("token.uma", status=400, error="unauthorized_client", description="Invalid identity")
    answer = await kc.uma(kc.user_token("dave"), "HUB-moc#GET")
    assert (answer.status, answer.body) == (
        400,
        {"error": "unauthorized_client", "error_description": "Invalid identity"},
    )


async def test_cost_model_charges_per_evaluated_resource(kc: Keycloak, emu: Emulator) -> None:
    """The cost model (`evaluation_cost`) waits per resource a UMA call evaluated: `#GET`
    pays for the whole realm, a named question for its names only."""
    emu.evaluation_cost = 0.001
    rs = emu.realm("nerc").client_by_client_id(RS)
    assert rs is not None and rs.authz is not None
    with mock.patch("keycloak_emulator.http_oidc.charge") as slept:
        await kc.uma(kc.user_token("dave"), "#GET")
        await kc.uma(kc.user_token("dave"), "HUB-moc#GET")
    waits = [c.args[0] for c in slept.call_args_list]
    assert waits == pytest.approx([0.001 * len(rs.authz.resources), 0.001])
