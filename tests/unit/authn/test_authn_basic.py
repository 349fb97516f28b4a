"""Basic client credentials: minting, cache keys, single flight, failure caching, rate limits."""

from __future__ import annotations

import asyncio
import base64

import pytest

from proxy.authn import Authenticator
from proxy.authn.basic import credentials_key, parse_basic
from proxy.authn.identity import TokenRejected
from proxy.errors import KeycloakUnavailable, TooManyRequests, Unauthorized
from proxy.keycloak_client import reuse_until

from .conftest import MakeAuthn
from .fake_realm import PROXY_CLIENT, PROXY_SECRET, FakeRealm

CLIENT, SECRET = "researcher-team-a", "s3cr:et:with:colons"


def basic(client_id: str, secret: str) -> str:
    """An Authorization header for Basic credentials."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def test_basic_credentials_mint_a_token_for_the_client(authn: Authenticator, realm: FakeRealm) -> None:
    """Valid Basic credentials (secret with colons) yield the client's own token and identity."""
    identity = await authn.authenticate(basic(CLIENT, SECRET))
    assert identity.subject == CLIENT
    assert identity.client_id == CLIENT
    assert identity.claims["azp"] == CLIENT
    assert realm.calls["token"] == 1


async def test_minted_token_is_reused(authn: Authenticator, realm: FakeRealm) -> None:
    """Repeated requests with the same credentials reuse one minted token."""
    first = await authn.authenticate(basic(CLIENT, SECRET))
    for _ in range(10):
        assert (await authn.authenticate(basic(CLIENT, SECRET))).token == first.token
    assert realm.calls["token"] == 1


async def test_cache_key_includes_the_secret(authn: Authenticator, realm: FakeRealm) -> None:
    """A cached token for an id is never handed to someone presenting another secret."""
    await authn.authenticate(basic(CLIENT, SECRET))
    with pytest.raises(Unauthorized):
        await authn.authenticate(basic(CLIENT, "guess"))
    assert realm.calls["token"] == 2


def test_credentials_key_separates_id_and_secret() -> None:
    """`a:bc` and `ab:c` never share a cache key (0x00 separator), and the key is no id."""
    assert credentials_key("a", "bc") != credentials_key("ab", "c")
    assert CLIENT not in credentials_key(CLIENT, SECRET)


def test_parse_basic_splits_at_first_colon() -> None:
    """Client ids cannot contain `:`, secrets can."""
    encoded = base64.b64encode(b"id:se:cr:et").decode()
    assert parse_basic(encoded) == ("id", "se:cr:et")


@pytest.mark.parametrize(
    "raw",
    [
        "!!!",
        base64.b64encode(b"nocolon").decode(),
        base64.b64encode(b":secret").decode(),
        base64.b64encode(b"id:").decode(),
        base64.b64encode(b"\xff\xfe:x").decode(),
    ],
)
def test_parse_basic_rejects_malformed(raw: str) -> None:
    """Bad base64, missing parts or non-UTF-8 are rejected."""
    with pytest.raises(TokenRejected):
        parse_basic(raw)


async def test_concurrent_identical_basic_requests_mint_once(authn: Authenticator, realm: FakeRealm) -> None:
    """Fifty concurrent requests with the same credentials share one mint."""
    realm.delay["token"] = 0.2
    identities = await asyncio.gather(*(authn.authenticate(basic(CLIENT, SECRET)) for _ in range(50)))
    assert {i.token for i in identities} == {identities[0].token}
    assert realm.calls["token"] == 1


async def test_failed_mint_is_cached(authn: Authenticator, realm: FakeRealm) -> None:
    """A rejected secret is remembered: retries are 401 without reaching Keycloak."""
    for _ in range(5):
        with pytest.raises(Unauthorized) as caught:
            await authn.authenticate(basic(CLIENT, "wrong"))
        assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="nerc"'}
    # One attempt, two calls: the form, then the Basic header (the client's method is not known).
    assert realm.calls["token"] == 2


async def test_failures_are_rate_limited_per_client_id(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """After the per-minute limit of failures an id gets 429 with Retry-After; others do not."""
    authn = await make_authn(basic_auth_failures_per_minute=3)
    for guess in ("g1", "g2", "g3"):
        with pytest.raises(Unauthorized):
            await authn.authenticate(basic(CLIENT, guess))
    with pytest.raises(TooManyRequests) as caught:
        await authn.authenticate(basic(CLIENT, "g4"))
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 60
    assert realm.calls["token"] == 2 * 3  # each attempt tries both secret methods
    with pytest.raises(TooManyRequests):
        await authn.authenticate(basic(CLIENT, SECRET))
    with pytest.raises(Unauthorized):
        await authn.authenticate(basic("someone-else", "x"))


async def test_failures_are_rate_limited_globally(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """Spraying many client ids hits the overall limit (10 × the per-id limit)."""
    authn = await make_authn(basic_auth_failures_per_minute=1)
    for i in range(10):
        with pytest.raises(Unauthorized):
            await authn.authenticate(basic(f"client-{i}", "x"))
    with pytest.raises(TooManyRequests):
        await authn.authenticate(basic("client-new", "x"))
    assert realm.calls["token"] == 2 * 10  # each attempt tries both secret methods


async def test_cached_token_survives_rate_limit(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """A client already holding a minted token keeps working while guessers are throttled."""
    authn = await make_authn(basic_auth_failures_per_minute=1)
    good = await authn.authenticate(basic(CLIENT, SECRET))
    with pytest.raises(Unauthorized):
        await authn.authenticate(basic(CLIENT, "guess"))
    assert (await authn.authenticate(basic(CLIENT, SECRET))).token == good.token


async def test_correct_secret_is_not_locked_out_by_guessing(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """After its token expired and 12 wrong guesses on its id (the last ones throttled), the
    client's correct secret, which minted before, still gets a fresh token."""
    realm.token_lifetime = 2  # reused for half its lifetime
    authn = await make_authn()  # 10 failures per id and minute
    first = await authn.authenticate(basic(CLIENT, SECRET))
    outcomes = []
    for i in range(12):
        try:
            await authn.authenticate(basic(CLIENT, f"guess-{i}"))
        except TooManyRequests:
            outcomes.append(429)
        except Unauthorized:
            outcomes.append(401)
    assert outcomes == [401] * 10 + [429] * 2
    await asyncio.sleep(1.2)
    again = await authn.authenticate(basic(CLIENT, SECRET))
    assert again.subject == CLIENT and again.token != first.token
    assert realm.calls["token"] == 1 + 10 + 1


async def test_proxy_own_client_id_is_refused(authn: Authenticator, realm: FakeRealm) -> None:
    """Basic with the proxy's own client id is a 401 and never reaches Keycloak."""
    with pytest.raises(Unauthorized):
        await authn.authenticate(basic(PROXY_CLIENT, PROXY_SECRET))
    assert realm.calls["token"] == 0


async def test_keycloak_error_on_mint_is_unavailable_and_not_cached(
    authn: Authenticator, realm: FakeRealm
) -> None:
    """A 5xx while minting is a 503 and is neither cached nor counted as a failure."""
    realm.status["token"] = 500
    with pytest.raises(KeycloakUnavailable):
        await authn.authenticate(basic(CLIENT, SECRET))
    del realm.status["token"]
    assert (await authn.authenticate(basic(CLIENT, SECRET))).subject == CLIENT


async def test_slow_mint_is_unavailable_within_timeout(make_authn: MakeAuthn, realm: FakeRealm) -> None:
    """A token endpoint slower than auth_timeout gives 503 promptly."""
    authn = await make_authn(auth_timeout="300ms")
    realm.delay["token"] = 2
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(KeycloakUnavailable):
        await authn.authenticate(basic(CLIENT, SECRET))
    assert loop.time() - started < 1.0


def test_reuse_until_keeps_a_margin() -> None:
    """Tokens are dropped 30 s before exp, or half-way for very short lifetimes."""
    assert reuse_until(0, 300) == 270
    assert reuse_until(0, 40) == 20
    assert reuse_until(100, 90) == 90
