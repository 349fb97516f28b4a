"""Decision caching and single flight: how often Keycloak is asked."""

from __future__ import annotations

import asyncio

from proxy.authz import Authorizer
from proxy.promql.scope import Holdings

from .conftest import MakeAuthz
from .fake_uma import FakeAuthz, identity

PROD, TEST = "nerc-ocp-prod", "nerc-ocp-test"
CLUSTER = "HUB-moc-CLUSTER-"


async def test_concurrent_identical_checks_make_one_call(authz: Authorizer, fake: FakeAuthz) -> None:
    """Fifty concurrent identical checks share one UMA call and one resource listing."""
    fake.delay["uma"] = 0.1
    fake.grant("bob", f"{CLUSTER}{TEST}")
    who = identity("bob")
    results = await asyncio.gather(*(authz.holdings(who, frozenset({TEST}), {}) for _ in range(50)))
    assert all(held == Holdings(clusters=frozenset({TEST})) for held in results)
    assert fake.calls["uma"] == 1
    assert fake.calls["resource_set"] == 1


async def test_sequential_checks_within_ttl_make_one_call(authz: Authorizer, fake: FakeAuthz) -> None:
    """A hundred identical checks within the TTL cost one UMA call."""
    fake.grant("bob", f"{CLUSTER}{TEST}")
    who = identity("bob")
    for _ in range(100):
        await authz.holdings(who, frozenset({TEST}), {})
    assert fake.calls["uma"] == 1


async def test_denials_are_cached_too(authz: Authorizer, fake: FakeAuthz) -> None:
    """Nothing granted is remembered in the deny cache."""
    who = identity("eve")
    for _ in range(10):
        assert await authz.holdings(who, frozenset({TEST}), {}) == Holdings.nothing()
    assert fake.calls["uma"] == 1


async def test_cache_never_outlives_the_token(authz: Authorizer, fake: FakeAuthz) -> None:
    """An answer for a token expiring in 1 s is not reused after that second."""
    fake.grant("bob", f"{CLUSTER}{TEST}")
    who = identity("bob", lifetime=0.5)
    await authz.holdings(who, frozenset({TEST}), {})
    await authz.holdings(who, frozenset({TEST}), {})
    assert fake.calls["uma"] == 1
    await asyncio.sleep(0.6)
    await authz.holdings(who, frozenset({TEST}), {})
    assert fake.calls["uma"] == 2


async def test_deny_ttl_is_separate(make_authz: MakeAuthz, fake: FakeAuthz) -> None:
    """Denials expire after the deny TTL while grants stay cached for the allow TTL."""
    authz = make_authz(authz_deny_cache_ttl="300ms", authz_cache_ttl="60s")
    fake.grant("bob", f"{CLUSTER}{TEST}")
    bob, eve = identity("bob"), identity("eve")
    await authz.holdings(bob, frozenset({TEST}), {})
    await authz.holdings(eve, frozenset({TEST}), {})
    await asyncio.sleep(0.4)
    await authz.holdings(bob, frozenset({TEST}), {})
    await authz.holdings(eve, frozenset({TEST}), {})
    assert fake.calls["uma"] == 3


async def test_key_is_token_and_names(authz: Authorizer, fake: FakeAuthz) -> None:
    """Another token or another set of names is another question; name order is not."""
    fake.grant("carol", f"{CLUSTER}{PROD}")
    await authz.holdings(identity("carol"), frozenset({PROD, TEST}), {})
    await authz.holdings(identity("carol"), frozenset({TEST, PROD}), {})
    assert fake.calls["uma"] == 1
    await authz.holdings(identity("carol", tag="other"), frozenset({PROD, TEST}), {})
    await authz.holdings(identity("carol"), frozenset({PROD}), {})
    assert fake.calls["uma"] == 3


async def test_holdings_call_is_cached(authz: Authorizer, fake: FakeAuthz) -> None:
    """The holdings call is cached and single-flight like targeted checks."""
    fake.grant("carol", f"{CLUSTER}{PROD}")
    who = identity("carol")
    await asyncio.gather(*(authz.holdings(who, None, {}) for _ in range(20)))
    await authz.holdings(who, None, {})
    assert fake.calls["uma"] == 1


async def test_resolved_names_are_reused_across_callers(authz: Authorizer, fake: FakeAuthz) -> None:
    """Resource ids come from one listing shared by every caller's questions."""
    for user in ("alice", "bob", "carol", "dave", "eve"):
        await authz.holdings(identity(user), frozenset({TEST}), {})
    assert fake.calls["resource_set"] == 1
    assert fake.calls["uma"] == 5


async def test_cache_is_bounded(make_authz: MakeAuthz, fake: FakeAuthz) -> None:
    """With room for two answers, a third evicts one."""
    authz = make_authz(authz_cache_size=2)
    fake.grant("bob", f"{CLUSTER}{TEST}")
    for tag in ("1", "2", "3", "1"):
        await authz.holdings(identity("bob", tag=tag), frozenset({TEST}), {})
    assert fake.calls["uma"] == 4
