"""Authorization end to end against the Keycloak emulator loaded from demo/proxy_demo/demo.yaml."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest

from keycloak_emulator import Emulator
from proxy.errors import KeycloakUnavailable
from proxy.promql.scope import Holdings
from proxy_demo.policy import DEMO_POLICY
from tests.unit.authz.emulator_stack import Stack, emulator_stack, held

DEMO = DEMO_POLICY
REALM, PROD, TEST = "nerc", "nerc-ocp-prod", "nerc-ocp-test"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """Emulator on loopback plus a started authenticator and an authorizer."""
    async with emulator_stack(Emulator.from_files([DEMO])) as stack:
        yield stack


@pytest.mark.parametrize(
    ("user", "clusters", "projects", "expected"),
    [
        ("alice", {PROD}, {PROD: {"team-a", "team-b"}}, held(projects={PROD: {"team-a"}})),
        ("bob", {PROD, TEST}, {}, held(clusters={TEST})),
        ("carol", set(), {TEST: {"team-b", "team-c"}}, held(projects={TEST: {"team-b"}})),
        ("dave", {PROD}, {}, Holdings.everything()),
        ("eve", {PROD, TEST}, {PROD: {"team-a"}}, Holdings.nothing()),
        ("bob", {"no-such-cluster", TEST}, {}, held(clusters={TEST})),
    ],
)
async def test_targeted_questions_match_demo_policies(
    stack: Stack,
    user: str,
    clusters: set[str],
    projects: dict[str, set[str]],
    expected: Holdings,
) -> None:
    """Each demo user holds exactly what demo/proxy_demo/demo.yaml grants among the names asked."""
    who = await stack.user(user)
    held = await stack.authz.holdings(
        who, frozenset(clusters), {c: frozenset(p) for c, p in projects.items()}
    )
    assert held == expected


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("alice", held(projects={PROD: {"team-a"}})),
        ("bob", held(clusters={TEST})),
        ("carol", held(clusters={PROD}, projects={TEST: {"team-b"}})),
        ("dave", Holdings.everything()),
        ("eve", Holdings.nothing()),
    ],
)
async def test_holdings_call_matches_demo_policies(stack: Stack, user: str, expected: Holdings) -> None:
    """The holdings call (`#GET`) yields each demo user's whole reach."""
    assert await stack.authz.holdings(await stack.user(user), None, {}) == expected


async def test_basic_client_holdings(stack: Stack) -> None:
    """A researcher client authenticated by Basic holds its team's projects on both clusters."""
    raw = base64.b64encode(b"researcher-team-a:researcher-team-a-secret").decode()
    who = await stack.authn.authenticate(f"Basic {raw}")
    assert who.subject == "researcher-team-a"
    reach = await stack.authz.holdings(who, None, {})
    assert reach == held(projects={PROD: {"team-a"}, TEST: {"team-a"}})


async def test_fifty_concurrent_checks_one_uma_call(stack: Stack) -> None:
    """Fifty concurrent identical checks reach the emulator's UMA grant once."""
    who = await stack.user("carol")
    stack.emu.reset_stats()
    results = await asyncio.gather(*(stack.authz.holdings(who, frozenset({PROD}), {}) for _ in range(50)))
    assert all(r == held(clusters={PROD}) for r in results)
    assert stack.uma_calls() == 1


async def test_hundred_sequential_checks_one_uma_call(stack: Stack) -> None:
    """A hundred sequential checks within the TTL reach the UMA grant once."""
    who = await stack.user("alice")
    stack.emu.reset_stats()
    for _ in range(100):
        await stack.authz.holdings(who, frozenset(), {PROD: frozenset({"team-a"})})
    assert stack.uma_calls() == 1


async def test_faults_are_unavailable_then_recover(stack: Stack) -> None:
    """A 5xx or a slow UMA answer is a 503 within auth_timeout; afterwards answers resume."""
    who = await stack.user("bob")
    stack.emu.inject_fault("token.uma", status=500, times=1)
    with pytest.raises(KeycloakUnavailable):
        await stack.authz.holdings(who, frozenset({TEST}), {})
    stack.emu.inject_fault("token.uma", status=None, delay=1.5, times=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(KeycloakUnavailable):
        await stack.authz.holdings(who, frozenset({TEST}), {})
    assert loop.time() - started < 1.5
    stack.emu.clear_faults()
    assert await stack.authz.holdings(who, frozenset({TEST}), {}) == held(clusters={TEST})
