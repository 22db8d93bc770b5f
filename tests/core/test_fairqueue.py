"""The fair-queue algorithm itself, driven step by step through a scripted driver.

The driver here is not a stand-in for any server: it is the algorithm's own boundary
(fencing_coord.fairqueue.QueueDriver), so these tests pin what the algorithm asks a
backend to do in each situation. Every backend runs the same steps against its service
in its conformance suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fencing_coord.fairqueue import EntryGone, queue_steps, wait_in_line


@dataclass(frozen=True)
class _Place:
    number: int
    first: bool


@dataclass
class _Driver:
    """Serves places from a script: ``firsts[i]`` is whether the i-th look finds us first.
    ``gone_at`` makes those look numbers raise EntryGone; ``fail_at`` raises an error."""

    firsts: list[bool]
    gone_at: set[int] = field(default_factory=set)
    fail_at: set[int] = field(default_factory=set)
    refuse_exclusive: bool = True
    calls: list[str] = field(default_factory=list)
    looks: int = 0
    enqueued: int = 0
    now: list[float] = field(default_factory=lambda: [0.0])

    def enqueue(self, exclusive: bool) -> _Place | None:
        self.calls.append(f"enqueue{'!' if exclusive else ''}")
        if exclusive and self.refuse_exclusive and not self.firsts[0]:
            return None
        self.enqueued += 1
        return _Place(self.enqueued, self.firsts[0])

    def look(self, place: _Place) -> _Place:
        self.looks += 1
        self.calls.append("look")
        if self.looks in self.gone_at:
            raise EntryGone("vanished")
        if self.looks in self.fail_at:
            raise RuntimeError("service failed")
        return _Place(place.number, self.firsts[min(self.looks, len(self.firsts) - 1)])

    def wait(self, place: _Place, deadline: float | None) -> None:
        self.calls.append("wait")

    def withdraw(self, place: _Place) -> bool:
        self.calls.append(f"withdraw{place.number}")
        return True

    def claim(self, place: _Place) -> str:
        self.calls.append(f"claim{place.number}")
        return f"grant{place.number}"


def test_first_at_once_is_one_enqueue_and_a_claim() -> None:
    driver = _Driver([True])
    assert wait_in_line(driver, None) == "grant1"
    assert driver.calls == ["enqueue", "claim1"]


def test_a_waiter_waits_then_looks_until_first_and_is_told_once_that_it_queued() -> None:
    driver = _Driver([False, False, False, True])
    told: list[int] = []
    assert wait_in_line(driver, None, lambda: told.append(1)) == "grant1"
    assert told == [1]
    assert driver.calls == ["enqueue", "wait", "look", "wait", "look", "wait", "look", "claim1"]


def test_a_vanished_entry_queues_again_at_the_back() -> None:
    driver = _Driver([False, False, True], gone_at={1})
    assert wait_in_line(driver, None) == "grant2"
    assert driver.calls == ["enqueue", "wait", "look", "enqueue", "wait", "look", "claim2"]


def test_try_once_is_an_exclusive_enqueue_that_may_be_refused() -> None:
    driver = _Driver([False])
    assert wait_in_line(driver, deadline=float("-inf")) is None
    assert driver.calls == ["enqueue!"]


def test_try_once_withdraws_when_the_driver_enqueued_anyway() -> None:
    driver = _Driver([False], refuse_exclusive=False)
    assert wait_in_line(driver, deadline=float("-inf")) is None
    assert driver.calls == ["enqueue!", "withdraw1"]


def test_the_deadline_withdraws_the_place() -> None:
    clock = [0.0]
    steps = queue_steps(deadline=5.0, clock=lambda: clock[0])
    assert steps.send(None).kind == "enqueue"
    assert steps.send(_Place(1, first=False)).kind == "queued"
    assert steps.send(None).kind == "wait"
    assert steps.send(None).kind == "look"
    clock[0] = 5.0
    step = steps.send(_Place(1, first=False))
    assert (step.kind, step.args) == ("withdraw", (_Place(1, first=False),))
    with pytest.raises(StopIteration) as done:
        steps.send(True)
    assert done.value.value is None


def test_an_error_while_waiting_withdraws_then_propagates() -> None:
    driver = _Driver([False], fail_at={1})
    with pytest.raises(RuntimeError, match="service failed"):
        wait_in_line(driver, None)
    assert driver.calls == ["enqueue", "wait", "look", "withdraw1"]


def test_an_interrupt_in_on_queued_withdraws_then_propagates() -> None:
    """Ctrl-C (or a cancellation) while queued must not leave a waiter behind."""
    driver = _Driver([False])

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wait_in_line(driver, None, interrupted)
    assert driver.calls == ["enqueue", "withdraw1"]


def test_a_failing_withdraw_does_not_hide_the_original_error() -> None:
    class _Stuck(_Driver):
        def withdraw(self, place: _Place) -> bool:
            raise ConnectionError("cannot reach the service to withdraw")

    driver = _Stuck([False], fail_at={1})
    with pytest.raises(RuntimeError, match="service failed"):
        wait_in_line(driver, None)


def test_a_vanished_entry_after_the_deadline_gives_up() -> None:
    clock = [0.0]
    steps = queue_steps(deadline=5.0, clock=lambda: clock[0])
    steps.send(None)
    steps.send(_Place(1, first=False))  # -> queued
    steps.send(None)  # -> wait
    steps.send(None)  # -> look
    clock[0] = 6.0
    with pytest.raises(StopIteration) as done:
        steps.throw(EntryGone("vanished"))
    assert done.value.value is None
