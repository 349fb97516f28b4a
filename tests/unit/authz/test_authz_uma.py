"""The UMA grant as the authorizer uses it: names, grants by id, holdings, errors."""

from __future__ import annotations

import asyncio

import pytest

from proxy.authz import Authorizer
from proxy.errors import KeycloakUnavailable, Unauthorized
from proxy.keycloak import create_session
from proxy.keycloak_client import KeycloakClient
from proxy.promql.scope import Holdings

from .conftest import MakeAuthz, make_settings
from .fake_uma import RS, UMA, FakeAuthz, Resource, identity

PROD, TEST = "nerc-ocp-prod", "nerc-ocp-test"
CLUSTER = "HUB-moc-CLUSTER-"


def none() -> frozenset[str]:
    """No clusters."""
    return frozenset()


async def test_request_form_and_bearer(authz: Authorizer, fake: FakeAuthz) -> None:
    """The call is the §4.2 form with the caller's own token, HUB names first."""
    fake.grant("alice", f"{CLUSTER}{PROD}-PROJECT-team-a")
    await authz.holdings(identity("alice"), frozenset({PROD}), {PROD: frozenset({"team-a"})})
    form = fake.uma_forms[-1]
    assert ("grant_type", UMA) in form
    assert ("audience", RS) in form
    assert ("response_mode", "permissions") in form
    assert fake.permissions() == [
        "HUB#GET",
        "HUB-moc#GET",
        f"{CLUSTER}{PROD}#GET",
        f"{CLUSTER}{PROD}-PROJECT-team-a#GET",
    ]


async def test_partial_grant(authz: Authorizer, fake: FakeAuthz) -> None:
    """Only the granted project of the asked ones is held."""
    fake.grant("alice", f"{CLUSTER}{PROD}-PROJECT-team-a")
    held = await authz.holdings(identity("alice"), frozenset(), {PROD: frozenset({"team-a", "team-b"})})
    assert held == Holdings(projects={PROD: frozenset({"team-a"})})


async def test_cluster_grant_covers_project_questions(authz: Authorizer, fake: FakeAuthz) -> None:
    """A project question also asks its cluster, so a cluster holder is granted."""
    fake.grant("bob", f"{CLUSTER}{TEST}")
    held = await authz.holdings(identity("bob"), none(), {TEST: frozenset({"team-c"})})
    assert held.holds_project(TEST, "team-c")
    assert held == Holdings(clusters=frozenset({TEST}))


async def test_hub_grant_is_everything(authz: Authorizer, fake: FakeAuthz) -> None:
    """HUB-<hub> held means hub-wide."""
    fake.grant("dave", "HUB-moc")
    held = await authz.holdings(identity("dave"), frozenset({PROD}), {})
    assert held == Holdings.everything()


async def test_nothing_granted_is_nothing(authz: Authorizer, fake: FakeAuthz) -> None:
    """403 access_denied means nothing is held; it is no error."""
    held = await authz.holdings(identity("eve"), frozenset({PROD}), {})
    assert held == Holdings.nothing()


async def test_unknown_names_are_never_sent(authz: Authorizer, fake: FakeAuthz) -> None:
    """Names that are no resource-server resource are left out, wherever they would come."""
    fake.resources = [r for r in fake.resources if r.name != "HUB"]
    fake.grant("bob", f"{CLUSTER}{TEST}")
    held = await authz.holdings(identity("bob"), frozenset({"nope", TEST}), {})
    assert held == Holdings(clusters=frozenset({TEST}))
    assert fake.permissions() == ["HUB-moc#GET", f"{CLUSTER}{TEST}#GET"]


async def test_no_name_resolves_means_no_call(authz: Authorizer, fake: FakeAuthz) -> None:
    """When none of the names exists, nothing is granted and Keycloak is not asked."""
    fake.resources = []
    held = await authz.holdings(identity("dave"), frozenset({PROD}), {})
    assert held == Holdings.nothing()
    assert fake.calls["uma"] == 0


async def test_user_owned_hub_resource_is_ignored(authz: Authorizer, fake: FakeAuthz) -> None:
    """A caller's own resource named HUB-moc (which Keycloak resolves first) grants nothing."""
    fake.resources.append(Resource("mallory-HUB-moc", "HUB-moc", owner="mallory"))
    fake.resources.append(Resource("mallory-HUB", "HUB", owner="mallory"))
    held = await authz.holdings(identity("mallory"), frozenset({PROD}), {})
    assert held == Holdings.nothing()
    assert fake.calls["uma"] == 1


async def test_user_owned_hub_resource_is_ignored_in_holdings_call(
    authz: Authorizer, fake: FakeAuthz
) -> None:
    """In the holdings call too, only the resource server's own resource ids count."""
    fake.resources.append(Resource("mallory-HUB-moc", "HUB-moc", owner="mallory"))
    fake.resources.append(Resource(f"mallory-{PROD}", f"{CLUSTER}{PROD}", owner="mallory"))
    fake.grant("mallory", f"{CLUSTER}{TEST}-PROJECT-team-c")
    held = await authz.holdings(identity("mallory"), None, {})
    assert held == Holdings(projects={TEST: frozenset({"team-c"})})


async def test_owner_checked_even_if_server_ignores_owner_filter(authz: Authorizer, fake: FakeAuthz) -> None:
    """If the lookup also returns a user's same-named resource, the owner field rules it out."""
    fake.owner_filter = False
    fake.resources.append(Resource("mallory-HUB-moc", "HUB-moc", owner="mallory"))
    fake.grant("dave", "HUB-moc")
    assert await authz.holdings(identity("mallory"), frozenset({PROD}), {}) == Holdings.nothing()
    assert await authz.holdings(identity("dave"), frozenset({PROD}), {}) == Holdings.everything()


async def test_a_listing_without_representations_grants_nothing(authz: Authorizer, fake: FakeAuthz) -> None:
    """Ids without owner, name and scopes cannot be checked: nothing resolves, nothing is asked."""
    fake.deep = False
    fake.grant("dave", "HUB-moc", f"{CLUSTER}{PROD}")
    assert await authz.holdings(identity("dave"), frozenset({PROD}), {}) == Holdings.nothing()
    assert fake.calls["uma"] == 0


async def test_two_server_resources_of_one_name_grant_nothing(authz: Authorizer, fake: FakeAuthz) -> None:
    """Two server-owned ids for one name (the filter ignored, or a broken realm): ambiguous, unknown."""
    fake.resources.append(Resource("second-HUB-moc", "HUB-moc"))
    fake.grant("dave", "HUB-moc", f"{CLUSTER}{PROD}")
    held = await authz.holdings(identity("dave"), frozenset({PROD}), {})
    assert held == Holdings(clusters=frozenset({PROD}))
    assert "HUB-moc#GET" not in fake.permissions()


async def test_resource_without_get_scope_is_not_asked(authz: Authorizer, fake: FakeAuthz) -> None:
    """A resource lacking the GET scope would fail the UMA call (invalid_resource); not sent."""
    fake.resources = [
        Resource(r.rsid, r.name, scopes=("PATCH",)) if r.name == "HUB" else r for r in fake.resources
    ]
    fake.grant("bob", f"{CLUSTER}{TEST}")
    await authz.holdings(identity("bob"), frozenset({TEST}), {})
    assert fake.permissions() == ["HUB-moc#GET", f"{CLUSTER}{TEST}#GET"]


@pytest.mark.parametrize(
    "value",
    ["prod#PATCH", "a,HUB", "HUB", "Prod", "-x", "x-", "x y", "x\n", "", "é", "a" * 254],
)
async def test_unsafe_label_values_never_become_names(authz: Authorizer, fake: FakeAuthz, value: str) -> None:
    """Values outside the Kubernetes name pattern never reach Keycloak's permission parser."""
    fake.grant("dave", "HUB-moc")
    await authz.holdings(identity("dave"), frozenset({value}), {PROD: frozenset({value})})
    assert fake.permissions() == ["HUB#GET", "HUB-moc#GET", f"{CLUSTER}{PROD}#GET"]
    assert fake.lookups == [""]  # one listing, no name ever sent


async def test_too_many_names_fall_back_to_holdings(make_authz: MakeAuthz, fake: FakeAuthz) -> None:
    """Beyond four calls of max_uma_names the holdings call (`#GET`) decides."""
    authz = make_authz(max_uma_names=1)
    fake.grant("carol", f"{CLUSTER}{PROD}", f"{CLUSTER}{TEST}-PROJECT-team-b")
    held = await authz.holdings(
        identity("carol"), frozenset({PROD, TEST}), {TEST: frozenset({"team-b", "team-c"})}
    )
    assert fake.permissions() == ["#GET"]
    assert held == Holdings(clusters=frozenset({PROD}), projects={TEST: frozenset({"team-b"})})


async def test_more_names_than_max_uma_names_take_several_calls(
    make_authz: MakeAuthz, fake: FakeAuthz
) -> None:
    """Six names with max_uma_names=4: two UMA calls of at most four names, answers merged."""
    authz = make_authz(max_uma_names=4)
    fake.grant("carol", f"{CLUSTER}{PROD}", f"{CLUSTER}{TEST}-PROJECT-team-b")
    held = await authz.holdings(
        identity("carol"), frozenset({PROD, TEST}), {TEST: frozenset({"team-b", "team-c"})}
    )
    asked = [fake.permissions(i) for i in range(len(fake.uma_forms))]
    assert [len(names) for names in asked] == [4, 2] and all("#GET" not in names for names in asked)
    assert held == Holdings(clusters=frozenset({PROD}), projects={TEST: frozenset({"team-b"})})


async def test_holdings_call_lists_everything_held(authz: Authorizer, fake: FakeAuthz) -> None:
    """clusters=None asks `#GET` and parses every granted name of this hub."""
    fake.grant("carol", f"{CLUSTER}{PROD}", f"{CLUSTER}{TEST}-PROJECT-team-b")
    fake.resources.append(Resource("other-hub", "HUB-other-CLUSTER-x"))
    fake.grant("carol", "HUB-other-CLUSTER-x")
    held = await authz.holdings(identity("carol"), None, {})
    assert fake.permissions() == ["#GET"]
    assert held == Holdings(clusters=frozenset({PROD}), projects={TEST: frozenset({"team-b"})})


async def test_holdings_call_hub_wide(authz: Authorizer, fake: FakeAuthz) -> None:
    """A hub-wide holder's holdings are everything."""
    fake.grant("dave", "HUB-moc", f"{CLUSTER}{PROD}")
    assert await authz.holdings(identity("dave"), None, {}) == Holdings.everything()


async def test_holdings_call_nothing(authz: Authorizer, fake: FakeAuthz) -> None:
    """Someone holding nothing gets empty holdings from the holdings call."""
    assert await authz.holdings(identity("eve"), None, {}) == Holdings.nothing()


async def test_keycloak_401_is_unauthorized(authz: Authorizer, fake: FakeAuthz) -> None:
    """A token Keycloak rejects is a 401 with the Bearer challenge."""
    with pytest.raises(Unauthorized) as caught:
        await authz.holdings(identity("revoked"), frozenset({PROD}), {})
    assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="nerc"'}


@pytest.mark.parametrize("status", [500, 502, 503, 400, 404])
async def test_keycloak_errors_are_unavailable_and_not_cached(
    authz: Authorizer, fake: FakeAuthz, status: int
) -> None:
    """5xx and unexpected 4xx are 503s; the next request asks again and recovers."""
    fake.grant("bob", f"{CLUSTER}{TEST}")
    fake.status["uma"] = status
    with pytest.raises(KeycloakUnavailable):
        await authz.holdings(identity("bob"), frozenset({TEST}), {})
    del fake.status["uma"]
    held = await authz.holdings(identity("bob"), frozenset({TEST}), {})
    assert held == Holdings(clusters=frozenset({TEST}))
    assert fake.calls["uma"] == 2


async def test_invalid_resource_forgets_stale_ids(authz: Authorizer, fake: FakeAuthz) -> None:
    """A resource deleted after it was resolved gives one 503, then names are resolved afresh."""
    fake.grant("bob", f"{CLUSTER}{TEST}")
    await authz.holdings(identity("bob"), frozenset({TEST}), {})
    fake.resources = [r for r in fake.resources if r.name != "HUB"]
    with pytest.raises(KeycloakUnavailable):
        await authz.holdings(identity("bob", tag="2"), frozenset({TEST}), {})
    held = await authz.holdings(identity("bob", tag="3"), frozenset({TEST}), {})
    assert held == Holdings(clusters=frozenset({TEST}))
    assert fake.permissions() == ["HUB-moc#GET", f"{CLUSTER}{TEST}#GET"]


async def test_slow_keycloak_is_unavailable_within_timeout(make_authz: MakeAuthz, fake: FakeAuthz) -> None:
    """A UMA call slower than auth_timeout is a 503 promptly; the answer is not cached."""
    authz = make_authz(auth_timeout="300ms")
    fake.delay["uma"] = 2
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(KeycloakUnavailable):
        await authz.holdings(identity("bob"), frozenset({TEST}), {})
    assert loop.time() - started < 0.8
    fake.delay.clear()
    fake.grant("bob", f"{CLUSTER}{TEST}")
    assert await authz.holdings(identity("bob"), frozenset({TEST}), {}) == Holdings(
        clusters=frozenset({TEST})
    )


async def test_unreachable_keycloak_is_unavailable(make_authz: MakeAuthz) -> None:
    """Nothing listening: 503."""
    settings = make_settings("http://127.0.0.1:1")
    async with create_session(settings) as session:
        authz = Authorizer(settings, KeycloakClient(settings, session))
        with pytest.raises(KeycloakUnavailable):
            await authz.holdings(identity("bob"), frozenset({TEST}), {})


async def test_protection_api_failure_is_unavailable(authz: Authorizer, fake: FakeAuthz) -> None:
    """A failing Protection API lookup is a 503, never a guess that names do or do not exist."""
    fake.status["resource_set"] = 500
    with pytest.raises(KeycloakUnavailable):
        await authz.holdings(identity("bob"), frozenset({TEST}), {})
    assert fake.calls["uma"] == 0


async def test_rejected_pat_is_renewed_once(authz: Authorizer, fake: FakeAuthz) -> None:
    """A PAT the Protection API rejects is dropped and the lookup retried with a new one."""
    fake.valid_pats = {"pat-2"}
    fake.grant("bob", f"{CLUSTER}{TEST}")
    held = await authz.holdings(identity("bob"), frozenset({TEST}), {})
    assert held == Holdings(clusters=frozenset({TEST}))
    assert fake.pats == ["pat-1", "pat-2"]
    held = await authz.holdings(identity("bob"), frozenset({PROD}), {})
    assert fake.pats == ["pat-1", "pat-2"]  # the renewed PAT is reused


async def test_concurrent_tokens_each_carry_their_own_bearer(authz: Authorizer, fake: FakeAuthz) -> None:
    """Interleaved calls for different users never mix tokens (per-request headers)."""
    fake.delay["uma"] = 0.05
    fake.grant("bob", f"{CLUSTER}{TEST}")
    fake.grant("carol", f"{CLUSTER}{PROD}")
    users = ["bob", "carol", "eve"] * 10
    results = await asyncio.gather(
        *(authz.holdings(identity(u, tag=str(i)), frozenset({PROD, TEST}), {}) for i, u in enumerate(users))
    )
    expected = {
        "bob": Holdings(clusters=frozenset({TEST})),
        "carol": Holdings(clusters=frozenset({PROD})),
        "eve": Holdings.nothing(),
    }
    assert all(held == expected[u] for u, held in zip(users, results, strict=True))
