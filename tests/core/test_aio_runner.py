"""The asyncio runner of the fair-queue algorithm (fencing_coord.fairqueue.await_in_line)
driven through a scripted driver at the algorithm's own boundary: what a cancellation
makes it do at each step."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from fencing_coord.fairqueue import await_in_line, complete


@dataclass(frozen=True)
class _Place:
    first: bool


@dataclass
class _Driver:
    """Enqueues behind a holder; ``look`` answers "first" once ``handed`` is set, after
    ``look_delay`` (the round trip during which a cancellation may land)."""

    handed: asyncio.Event = field(default_factory=asyncio.Event)
    look_delay: float = 0.0
    withdraw_delay: float = 0.0
    calls: list[str] = field(default_factory=list)

    async def enqueue(self, exclusive: bool) -> _Place | None:
        self.calls.append("enqueue")
        return _Place(False)

    async def look(self, place: _Place) -> _Place:
        self.calls.append("look")
        await asyncio.sleep(self.look_delay)
        return _Place(self.handed.is_set())

    async def wait(self, place: _Place, deadline: float | None) -> None:
        self.calls.append("wait")
        await self.handed.wait()

    async def withdraw(self, place: _Place) -> bool:
        self.calls.append("withdraw")
        await asyncio.sleep(self.withdraw_delay)
        self.calls.append("withdrawn")
        return True

    def claim(self, place: _Place) -> str:
        self.calls.append("claim")
        return "grant"


def test_a_cancelled_wait_withdraws_the_entry() -> None:
    async def main() -> list[str]:
        driver = _Driver()
        task = asyncio.create_task(await_in_line(driver, None))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return driver.calls

    assert asyncio.run(main()) == ["enqueue", "wait", "withdraw", "withdrawn"]


def test_cancelled_after_becoming_first_the_entry_is_given_up_not_claimed() -> None:
    """The handoff reached us (our look would find us first) but the task is cancelled
    during that look: the entry, first by now, is withdrawn: the lock is released."""

    async def main() -> list[str]:
        driver = _Driver(look_delay=0.05)
        task = asyncio.create_task(await_in_line(driver, None))
        await asyncio.sleep(0.01)
        driver.handed.set()
        await asyncio.sleep(0.02)  # inside the look
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return driver.calls

    assert asyncio.run(main()) == ["enqueue", "wait", "look", "withdraw", "withdrawn"]


def test_a_second_cancellation_does_not_cut_the_withdrawal_short() -> None:
    async def main() -> list[str]:
        driver = _Driver(withdraw_delay=0.05)
        task = asyncio.create_task(await_in_line(driver, None))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)  # inside the withdrawal
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return driver.calls

    assert asyncio.run(main())[-2:] == ["withdraw", "withdrawn"]


def test_the_grant_reaches_the_caller_once_claimed() -> None:
    async def main() -> tuple[str | None, list[str]]:
        driver = _Driver()
        driver.handed.set()
        return await await_in_line(driver, None), driver.calls

    assert asyncio.run(main()) == ("grant", ["enqueue", "wait", "look", "claim"])


def test_complete_returns_the_result_and_raises_a_cancellation_after() -> None:
    async def main() -> list[str]:
        done: list[str] = []

        async def work() -> str:
            await asyncio.sleep(0.03)
            done.append("finished")
            return "result"

        assert await complete(work()) == "result"
        task = asyncio.create_task(complete(work()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return done

    assert asyncio.run(main()) == ["finished", "finished"]
