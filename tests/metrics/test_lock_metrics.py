"""Lock metrics, taken by the LockBackend template for every backend (memory here, with
an injected clock: leases expire when the test moves the clock)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import fencing_coord as fc
from fencing_coord.interface import LockBackend
from fencing_coord.observability import (
    LEASE_EXPIRED_WHILE_EXECUTING,
    LOCK_ACQUIRE_FAILURE,
    LOCK_ACQUIRE_LATENCY,
    LOCK_ACQUIRE_SUCCESS,
    LOCK_HOLD_DURATION,
    LOCK_LOST,
    Metrics,
    RecordingSink,
)
from fencing_coord.testing import FakeClock

PROMPT = 30.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pair(clock: FakeClock) -> Iterator[tuple[LockBackend, LockBackend]]:
    table = f"memory://metrics-{uuid.uuid4().hex[:8]}"
    with fc.connect(table, clock=clock, ttl=10, identity="a") as a, \
            fc.connect(table, clock=clock, ttl=10, identity="b") as b:
        yield a, b


def test_grant_latency_and_hold_duration(sink: RecordingSink, pair: tuple[LockBackend, LockBackend]) -> None:
    a, _ = pair
    with a.lock("orders", timeout=PROMPT):
        pass
    assert sink.count(LOCK_ACQUIRE_SUCCESS, backend="memory", lock="orders") == 1
    assert len(sink.observations(LOCK_ACQUIRE_LATENCY, backend="memory", lock="orders")) == 1
    assert len(sink.observations(LOCK_HOLD_DURATION, backend="memory", lock="orders")) == 1
    assert sink.count(LEASE_EXPIRED_WHILE_EXECUTING) == 0
    assert sink.count(LOCK_ACQUIRE_FAILURE) == sink.count(LOCK_LOST) == 0


def test_failures_by_reason(sink: RecordingSink, pair: tuple[LockBackend, LockBackend]) -> None:
    a, b = pair
    a.acquire("orders", timeout=PROMPT)
    with pytest.raises(fc.LockTimeout):
        b.acquire("orders", timeout=0)
    assert b.try_acquire("orders") is None
    assert sink.count(LOCK_ACQUIRE_FAILURE, lock="orders", reason="timeout") == 1
    assert sink.count(LOCK_ACQUIRE_FAILURE, lock="orders", reason="busy") == 1
    assert sink.count(LOCK_ACQUIRE_SUCCESS) == 1


def test_reentrant_acquisitions_are_not_counted(sink: RecordingSink, pair: tuple[LockBackend, LockBackend]) -> None:
    a, _ = pair
    with a.lock("orders", timeout=PROMPT), a.lock("orders", timeout=PROMPT):
        pass
    assert sink.count(LOCK_ACQUIRE_SUCCESS) == 1
    assert len(sink.observations(LOCK_HOLD_DURATION)) == 1


def test_lease_expired_while_executing_inside_lock(sink: RecordingSink, clock: FakeClock,
                                                   pair: tuple[LockBackend, LockBackend]) -> None:
    a, b = pair
    with a.lock("orders", timeout=PROMPT) as grant:
        clock.advance(15)  # the holder is paused past its lease, still inside the block
        b.acquire("orders", timeout=0)
        assert grant.wait_lost(PROMPT)
    assert sink.count(LEASE_EXPIRED_WHILE_EXECUTING, backend="memory", lock="orders") == 1
    assert sink.count(LOCK_LOST, backend="memory", lock="orders", reason="lease_expired") == 1
    assert len(sink.observations(LOCK_HOLD_DURATION, lock="orders")) == 1  # the holder's, on release


def test_a_loss_noticed_only_at_release_still_counts(sink: RecordingSink, clock: FakeClock,
                                                      pair: tuple[LockBackend, LockBackend]) -> None:
    a, _ = pair
    grant = a.acquire("orders", timeout=PROMPT)
    clock.advance(15)  # nobody looked: the loss is found by release itself
    assert a.release(grant) is False
    assert sink.count(LEASE_EXPIRED_WHILE_EXECUTING, lock="orders") == 1


def test_release_inside_the_block_is_not_an_expiry(sink: RecordingSink, pair: tuple[LockBackend, LockBackend]) -> None:
    a, _ = pair
    with a.lock("orders", timeout=PROMPT) as grant:
        assert a.release(grant)
    assert sink.count(LEASE_EXPIRED_WHILE_EXECUTING) == 0
    assert len(sink.observations(LOCK_HOLD_DURATION)) == 1


def test_close_records_the_hold_of_locks_still_held(sink: RecordingSink, clock: FakeClock) -> None:
    backend = fc.connect(f"memory://metrics-{uuid.uuid4().hex[:8]}", clock=clock)
    backend.acquire("orders", timeout=PROMPT)
    backend.close()
    assert len(sink.observations(LOCK_HOLD_DURATION, lock="orders")) == 1


def test_a_backend_of_its_own_overrides_the_process_wide_metrics(
        sink: RecordingSink, pair: tuple[LockBackend, LockBackend]) -> None:
    a, b = pair
    own = RecordingSink()
    a.metrics = Metrics(own)
    with a.lock("orders", timeout=PROMPT):
        pass
    with b.lock("orders", timeout=PROMPT):
        pass
    assert own.count(LOCK_ACQUIRE_SUCCESS) == 1
    assert sink.count(LOCK_ACQUIRE_SUCCESS) == 1


def test_nothing_is_measured_without_metrics(pair: tuple[LockBackend, LockBackend]) -> None:
    a, _ = pair
    grant = a.acquire("orders", timeout=PROMPT)
    assert grant._held_since is None  # no timestamp taken, no loss callback registered
    assert grant._callbacks == []
    a.release(grant)
