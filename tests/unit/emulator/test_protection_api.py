"""The Protection API resource lookup the proxy uses to resolve names to ids (docs/keycloak.md)."""

from __future__ import annotations

from tests.unit.emulator.support import RS, Keycloak

RESOURCE_SET = "/realms/nerc/authz/protection/resource_set"


def pat(kc: Keycloak) -> dict[str, str]:
    """The resource server's own client-credentials token (PAT) as a header."""
    token = kc.emu.client_token("nerc", RS, "prom-keycloak-proxy-secret")["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def test_exact_name_lookup_returns_resource_ids(kc: Keycloak) -> None:
    """`?name=…&exactName=true` → a JSON list holding the one resource id."""
    answer = await kc.get(f"{RESOURCE_SET}?name=HUB-moc&exactName=true", pat(kc))
    uma = await kc.uma(kc.user_token("dave"), "HUB-moc#GET")
    assert answer.status == 200 and answer.body == [uma.body[0]["rsid"]]


async def test_name_without_exact_is_a_substring_search(kc: Keycloak) -> None:
    """Without exactName, `name` matches as a substring (Keycloak's LIKE %name%)."""
    answer = await kc.get(f"{RESOURCE_SET}?name=HUB-moc", pat(kc))
    assert len(answer.body) == 9


async def test_unknown_name_is_an_empty_list(kc: Keycloak) -> None:
    """A name that is no resource → 200 []."""
    answer = await kc.get(f"{RESOURCE_SET}?name=HUB-moc-CLUSTER-nope&exactName=true", pat(kc))
    assert (answer.status, answer.body) == (200, [])


async def test_deep_returns_representations(kc: Keycloak) -> None:
    """`deep=true` → ResourceRepresentation objects with `_id`, `name`, `owner`, `scopes`."""
    answer = await kc.get(f"{RESOURCE_SET}?name=HUB&exactName=true&deep=true", pat(kc))
    assert answer.body[0]["name"] == "HUB" and answer.body[0]["scopes"][0]["name"] == "GET"
    assert answer.body[0]["owner"]["name"] == RS


async def test_only_a_resource_servers_pat_is_accepted(kc: Keycloak) -> None:
    """ProtectionService: no token → 401; a token of a non-resource-server client → 403."""
    none = await kc.get(f"{RESOURCE_SET}?name=HUB")
    user = await kc.get(f"{RESOURCE_SET}?name=HUB", {"Authorization": f"Bearer {kc.user_token('dave')}"})
    assert (none.status, none.body["error"]) == (401, "invalid_bearer_token")
    assert (user.status, user.body["error"]) == (403, "invalid_clientId")
