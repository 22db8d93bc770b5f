"""fencing_coord.aio.expiries: futures fail with TimeoutError at their limits, with one
timer of the loop for all of them."""

from __future__ import annotations

import asyncio
import time

from fencing_coord.aio.expiries import Expiries

from ..spies import recorded


def test_each_future_fails_at_its_own_limit_and_the_earliest_limit_sets_the_timer() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        expiries = Expiries(loop)
        with recorded(loop, "call_at") as scheduled:
            start = time.monotonic()
            late, early, never, answered = (loop.create_future() for _ in range(4))
            expiries.add(late, start + 0.3)
            expiries.add(early, start + 0.05)  # earlier than the timer: set again
            expiries.add(never, float("inf"))
            expiries.add(answered, start + 0.1)
            answered.set_result("answer")
            expiries.discard(answered)
            assert len(scheduled) == 2
            assert len(expiries) == 2
            try:
                await early
            except TimeoutError:
                assert 0.05 <= time.monotonic() - start < 0.3
            else:
                raise AssertionError("the early future did not expire")
            assert not late.done()
            try:
                await late
            except TimeoutError:
                assert time.monotonic() - start >= 0.3
            else:
                raise AssertionError("the late future did not expire")
            assert answered.result() == "answer"
            assert not never.done()
            assert len(expiries) == 0
            # late's timer was set when early's fired (late was left): three in all
            assert len(scheduled) == 3

    asyncio.run(main())


def test_later_limits_reuse_the_timer_and_a_limit_already_past_expires_at_once() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        expiries = Expiries(loop)
        with recorded(loop, "call_at") as scheduled:
            start = time.monotonic()
            futures = [loop.create_future() for _ in range(50)]
            for index, future in enumerate(futures):
                expiries.add(future, start + 60 + index)
            assert len(scheduled) == 1
            for future in futures:
                future.cancel()
                expiries.discard(future)
            past = loop.create_future()
            expiries.add(past, start - 1)
            await asyncio.wait({past}, timeout=5)
            assert isinstance(past.exception(), TimeoutError)
            assert len(expiries) == 0

    asyncio.run(main())
