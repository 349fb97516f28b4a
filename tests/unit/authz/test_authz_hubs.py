"""Authorization over several hubs of one resource-server client, against the Keycloak emulator.

The realm merges demo.yaml (hub `moc`) and demo-innabox.yaml (hub `innabox-dev`): the same
cluster name `nerc-ocp-prod` exists on both hubs, and grants differ per hub.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from keycloak_emulator import Emulator
from proxy.authz.authorizer import HubAuthz
from proxy.promql.scope import Holdings
from proxy_demo.policy import HUB_POLICIES, merged_realm
from tests.unit.authz.emulator_stack import Stack, emulator_stack, held

REALM, MOC, INNABOX = "nerc", "moc", "innabox-dev"
PROD, TEST, GPU = "nerc-ocp-prod", "nerc-ocp-test", "innabox-gpu"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """Emulator with both hubs on loopback, a started authenticator, an authorizer for both hubs."""
    emu = Emulator()
    emu.import_realm(merged_realm(HUB_POLICIES))
    async with emulator_stack(emu, hubs=(MOC, INNABOX)) as stack:
        yield stack


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("alice", {MOC: held(projects={PROD: {"team-a"}}), INNABOX: Holdings.nothing()}),
        ("bob", {MOC: held(clusters={TEST}), INNABOX: held(projects={GPU: {"team-c"}})}),
        (
            "carol",
            {MOC: held(clusters={PROD}, projects={TEST: {"team-b"}}), INNABOX: Holdings.everything()},
        ),
        ("dave", {MOC: Holdings.everything(), INNABOX: Holdings.nothing()}),
        ("frank", {MOC: Holdings.everything(), INNABOX: Holdings.everything()}),
        ("eve", {MOC: Holdings.nothing(), INNABOX: Holdings.nothing()}),
    ],
)
async def test_one_holdings_call_split_per_hub(
    stack: Stack, user: str, expected: dict[str, Holdings]
) -> None:
    """Each user's holdings per hub follow that hub's grants; `HUB` (frank) grants every hub."""
    who = await stack.user(user)
    before = stack.uma_calls()
    by_hub = await stack.authz.holdings_by_hub(who)
    assert by_hub == expected
    for hub in (MOC, INNABOX):
        assert await stack.authz.holdings(who, None, {}, hub) == expected[hub]
    assert stack.uma_calls() - before == 1  # one call served both hubs, then the cache


async def test_same_cluster_name_on_two_hubs_is_two_resources(stack: Stack) -> None:
    """A project grant on moc's nerc-ocp-prod grants nothing on innabox-dev's nerc-ocp-prod."""
    alice = await stack.user("alice")
    asked = frozenset({PROD}), {PROD: frozenset({"team-a"})}
    on_moc = await stack.authz.holdings(alice, *asked, MOC)
    on_innabox = await stack.authz.holdings(alice, *asked, INNABOX)
    assert on_moc == held(projects={PROD: {"team-a"}})
    assert on_innabox == Holdings.nothing()


async def test_targeted_decisions_are_keyed_by_hub(stack: Stack) -> None:
    """The same question on two hubs is two UMA calls; repeated, both come from the cache."""
    bob = await stack.user("bob")
    asked: tuple[frozenset[str], dict[str, frozenset[str]]] = frozenset({TEST}), {}
    before = stack.uma_calls()
    first = await stack.authz.holdings(bob, *asked, MOC)
    second = await stack.authz.holdings(bob, *asked, INNABOX)
    again = [await stack.authz.holdings(bob, *asked, hub) for hub in (MOC, INNABOX)]
    assert (first, second) == (held(clusters={TEST}), Holdings.nothing())
    assert again == [first, second]
    assert stack.uma_calls() - before == 2


async def test_concurrent_holdings_for_all_hubs_collapse_into_one_call(stack: Stack) -> None:
    """Many concurrent requests on both hubs for one token make a single holdings call."""
    carol = await stack.user("carol")
    before = stack.uma_calls()
    views = [HubAuthz(stack.authz, hub) for hub in (MOC, INNABOX)]
    answers = await asyncio.gather(*(views[i % 2].holdings(carol, None, {}) for i in range(20)))
    assert answers[1] == Holdings.everything()
    assert answers[0] == held(clusters={PROD}, projects={TEST: {"team-b"}})
    assert stack.uma_calls() - before == 1
