"""The Basic-auth guessing guard on its own clock: failure memory, known secrets, throttling."""

from __future__ import annotations

from proxy.authn.ratelimit import GuessGuard


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_pair_is_remembered_for_the_failure_ttl() -> None:
    """A failed pair is answered from memory for a minute, then tried again."""
    clock = Clock()
    guard = GuessGuard(10, failure_ttl=60, clock=clock)
    guard.failed("k1", "grafana", "client credentials rejected")
    assert guard.remembered_failure("k1") == "client credentials rejected"
    assert guard.remembered_failure("k2") is None
    clock.now += 61
    assert guard.remembered_failure("k1") is None


def test_only_unknown_secrets_are_throttled_per_id_and_overall() -> None:
    """Past the per-id limit unknown pairs of that id wait; a known pair and other ids do not;
    past the overall limit every unknown pair waits, a known one still does not."""
    clock = Clock()
    guard = GuessGuard(3, overall_factor=2, clock=clock)
    guard.minted("good")
    for i in range(3):
        guard.failed(f"bad-{i}", "grafana", "no")
    wait = guard.retry_after("new-guess", "grafana")
    assert wait is not None and 0 < wait <= 60
    assert guard.retry_after("good", "grafana") is None
    assert guard.retry_after("other", "someone-else") is None
    for i in range(3):
        guard.failed(f"spray-{i}", f"id-{i}", "no")
    assert guard.retry_after("other", "someone-else") is not None
    assert guard.retry_after("good", "grafana") is None
    clock.now += 61
    assert guard.retry_after("new-guess", "grafana") is None


def test_known_secret_is_forgotten_after_a_day_or_a_failure() -> None:
    """A pair that minted is trusted for 24 h, and no longer once it fails (e.g. revoked)."""
    clock = Clock()
    guard = GuessGuard(1, clock=clock)
    guard.minted("good")
    guard.failed("bad", "grafana", "no")
    assert guard.retry_after("good", "grafana") is None
    clock.now += 86401 - 61  # the failure window is still open when the trust ends
    guard.failed("bad2", "grafana", "no")
    clock.now += 61
    guard.failed("bad3", "grafana", "no")
    assert guard.retry_after("good", "grafana") is not None
    guard.minted("good")
    guard.failed("good", "grafana", "revoked")
    assert guard.remembered_failure("good") == "revoked"
