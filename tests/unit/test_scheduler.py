"""The fair scheduler on its own: caps, FIFO per subject, round-robin across subjects, 429s."""

from __future__ import annotations

import asyncio

import pytest

from proxy import errors
from proxy.scheduler import Scheduler, TokenBucket

HUB = "hub"


async def _hold(sched: Scheduler, subject: str, release: asyncio.Event, order: list[str], tag: str) -> float:
    """Take a slot, record the admission order, hold until `release`."""
    async with sched.admission(HUB, subject) as waited:
        order.append(tag)
        await release.wait()
        return waited


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_burst_of_one_subject_queues_instead_of_refusing() -> None:
    """8 running + 256 queued requests of one subject all run, never more than 8 at a time."""
    sched = Scheduler(hub_capacity=64, per_subject=8)
    running = peak = 0

    async def one() -> None:
        nonlocal running, peak
        async with sched.admission(HUB, "grafana"):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.001)
            running -= 1

    await asyncio.gather(*(one() for _ in range(8 + 256)))
    assert peak == 8
    assert sched.queued(HUB) == sched.running(HUB) == sched.subjects(HUB) == 0


async def test_freed_slots_go_round_robin_across_subjects() -> None:
    """With the hub full, freed slots alternate between waiting subjects, FIFO within each."""
    sched = Scheduler(hub_capacity=1, per_subject=8)
    gate = asyncio.Event()
    order: list[str] = []
    first = asyncio.create_task(_hold(sched, "a", gate, order, "a0"))
    await _settle()
    tasks = [asyncio.create_task(_hold(sched, "a", gate, order, f"a{i}")) for i in range(1, 4)]
    await _settle()
    tasks += [asyncio.create_task(_hold(sched, "b", gate, order, f"b{i}")) for i in range(3)]
    await _settle()
    assert sched.queued(HUB) == 6
    gate.set()
    await asyncio.gather(first, *tasks)
    assert order == ["a0", "a1", "b0", "a2", "b1", "a3", "b2"]


async def test_per_subject_cap_leaves_room_for_others() -> None:
    """A subject at its own cap waits while another subject is admitted at once."""
    sched = Scheduler(hub_capacity=10, per_subject=2)
    gate = asyncio.Event()
    order: list[str] = []
    hogs = [asyncio.create_task(_hold(sched, "a", gate, order, f"a{i}")) for i in range(5)]
    await _settle()
    assert sched.running(HUB) == 2 and sched.queued(HUB) == 3
    other = asyncio.create_task(_hold(sched, "b", gate, order, "b0"))
    await _settle()
    assert order == ["a0", "a1", "b0"]
    gate.set()
    waited = await asyncio.gather(*hogs, other)
    assert waited[-1] == 0.0


async def test_hubs_do_not_share_slots() -> None:
    """A hub whose slots are all taken does not delay another hub."""
    sched = Scheduler(hub_capacity=1, per_subject=1)
    gate = asyncio.Event()
    order: list[str] = []
    stuck = asyncio.create_task(_hold(sched, "a", gate, order, "dead"))
    await _settle()
    async with sched.admission("other", "a") as waited:
        assert waited == 0.0
    gate.set()
    await stuck


async def test_full_queue_is_429_with_retry_after() -> None:
    """Beyond the queue length a subject gets 429 + Retry-After; others still queue."""
    sched = Scheduler(hub_capacity=1, per_subject=1, max_queued=2)
    gate = asyncio.Event()
    order: list[str] = []
    tasks = [asyncio.create_task(_hold(sched, "a", gate, order, f"a{i}")) for i in range(3)]
    await _settle()
    with pytest.raises(errors.TooManyRequests) as refused:
        async with sched.admission(HUB, "a"):
            pass
    assert refused.value.headers and int(refused.value.headers["Retry-After"]) >= 1
    other = asyncio.create_task(_hold(sched, "b", gate, order, "b0"))
    await _settle()
    gate.set()
    await asyncio.gather(*tasks, other)
    assert sorted(order) == ["a0", "a1", "a2", "b0"]


async def test_wait_longer_than_the_queue_wait_is_429() -> None:
    """A request still queued after the queue wait leaves the queue with 429 + Retry-After."""
    sched = Scheduler(hub_capacity=1, per_subject=1, max_wait=0.05)
    gate = asyncio.Event()
    holder = asyncio.create_task(_hold(sched, "a", gate, [], "a0"))
    await _settle()
    with pytest.raises(errors.TooManyRequests) as refused:
        async with sched.admission(HUB, "b"):
            pass
    assert refused.value.headers and "Retry-After" in refused.value.headers
    assert sched.queued(HUB) == 0 and sched.subjects(HUB) == 1
    gate.set()
    await holder
    assert sched.subjects(HUB) == 0


async def test_cancelled_waiter_leaves_the_queue() -> None:
    """A caller who disconnects while queued frees its place; the next one gets the slot."""
    sched = Scheduler(hub_capacity=1, per_subject=1)
    gate = asyncio.Event()
    order: list[str] = []
    holder = asyncio.create_task(_hold(sched, "a", gate, order, "a0"))
    await _settle()
    gone = asyncio.create_task(_hold(sched, "b", gate, order, "gone"))
    nxt = asyncio.create_task(_hold(sched, "c", gate, order, "c0"))
    await _settle()
    gone.cancel()
    await _settle()
    assert sched.queued(HUB) == 1
    gate.set()
    await asyncio.gather(holder, nxt)
    assert order == ["a0", "c0"]
    assert sched.running(HUB) == sched.queued(HUB) == sched.subjects(HUB) == 0


async def test_waiter_cancelled_after_being_granted_gives_the_slot_back() -> None:
    """A slot handed to a waiter that is cancelled in the same loop turn is not lost."""
    sched = Scheduler(hub_capacity=1, per_subject=1)
    gate = asyncio.Event()
    holder = asyncio.create_task(_hold(sched, "a", gate, [], "a0"))
    await _settle()
    waiter = asyncio.create_task(_hold(sched, "b", asyncio.Event(), [], "b0"))
    await _settle()
    gate.set()
    await holder  # the release hands the slot to b's future ...
    waiter.cancel()  # ... and b leaves before its task resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert sched.running(HUB) == sched.queued(HUB) == sched.subjects(HUB) == 0
    async with sched.admission(HUB, "c") as waited:
        assert waited == 0.0


async def test_nested_work_inside_one_admission_does_not_deadlock() -> None:
    """Fan-out branches run inside the request's one admission, even with every slot taken."""
    sched = Scheduler(hub_capacity=2, per_subject=1)

    async def fan_out() -> int:
        async with sched.admission(HUB, "a"):
            branches = await asyncio.gather(*(asyncio.sleep(0.001, i) for i in range(32)))
            return len(branches)

    assert list(await asyncio.wait_for(asyncio.gather(fan_out(), fan_out(), fan_out()), 5)) == [32] * 3


def test_token_bucket_is_off_by_default_and_limits_when_set() -> None:
    """Rate 0 never limits; a configured rate refuses past the burst with a Retry-After."""
    now = [0.0]
    off = TokenBucket(0.0, 0, clock=lambda: now[0])
    assert not off.enabled
    bucket = TokenBucket(1.0, 3, clock=lambda: now[0])
    assert [bucket.retry_after("a") for _ in range(3)] == [None] * 3
    assert bucket.retry_after("a") == 1
    assert bucket.retry_after("b") is None
    now[0] += 1.0
    assert bucket.retry_after("a") is None


async def test_rate_limit_is_checked_at_admission() -> None:
    """With a rate configured, a subject past its burst gets 429 before queueing."""
    sched = Scheduler(rate=1.0, burst=2)
    for _ in range(2):
        async with sched.admission(HUB, "a"):
            pass
    with pytest.raises(errors.TooManyRequests):
        async with sched.admission(HUB, "a"):
            pass
