"""What one uncontended acquire+release costs the asyncio ZooKeeper driver: the blocking
driver's three requests (Create2 and GetChildren2 together; Delete), no task of ours,
four event-loop passes (two per answer awaited: the answer's hand-over, then the task's
step; see test_listing_behind), each answer in one hop from kazoo's connection thread,
and no timer per request; the release's Delete still runs to its end through
cancellations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.backends.zookeeper.grant import ZooKeeperGrant
from fencing_coord.testing.aio_fixtures import run_guarded

from ..spies import recorded
from .conftest import ZooKeeperTarget
from .test_backend import _Requests

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0


async def _connect(target: ZooKeeperTarget, namespace: str) -> AsyncZooKeeperBackend:
    backend = await fc.aio.connect(target.url, namespace=namespace, ttl=4)
    assert isinstance(backend, AsyncZooKeeperBackend)
    return backend


class _LoopCounts:
    """Tasks made and passes of the running loop (``_run_once``, asyncio's one pass)."""

    def __init__(self, loop: Any) -> None:
        self.tasks: list[str] = []
        self.passes = 0
        self._loop = loop
        self._run_once: Callable[[], None] = loop._run_once

    def __enter__(self) -> _LoopCounts:
        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            self.tasks.append(getattr(coro, "__qualname__", repr(coro)))
            return asyncio.Task(coro, loop=loop, **kwargs)

        def counted() -> None:
            self.passes += 1
            self._run_once()

        self._loop.set_task_factory(factory)
        self._loop._run_once = counted
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.set_task_factory(None)
        del self._loop._run_once


def test_an_uncontended_acquire_and_release_cost_three_requests_and_no_task(zk_standalone: ZooKeeperTarget) -> None:
    rounds = 5

    async def main() -> None:
        async with await _connect(zk_standalone, f"rt-{uuid.uuid4().hex[:10]}") as backend:
            assert isinstance(backend, AsyncZooKeeperBackend)
            await backend.release(await backend.acquire("orders", timeout=PROMPT))  # the parent is made
            sent = _Requests(backend)
            with _LoopCounts(asyncio.get_running_loop()) as counts:
                for _ in range(rounds):
                    assert await backend.release(await backend.acquire("orders", timeout=PROMPT)) is True
            assert counts.tasks == [], f"the uncontended path made tasks: {counts.tasks}"
            # A pass more now and then: an answer that was there before its await costs one,
            # a timer or a wake-up of the session's another; a task would cost two or three.
            assert counts.passes <= 7 * rounds, f"{counts.passes} loop passes for {rounds} acquire+release"
        assert sent.since(0)[:3 * rounds] == ["Create2", "GetChildren2", "Delete"] * rounds

    run_guarded(main)


def test_no_answer_of_an_uncontended_acquire_and_release_goes_through_kazoos_completion_thread(
        zk_standalone: ZooKeeperTarget) -> None:
    """Every answer reaches the loop from kazoo's connection thread in one hop: the
    create's too (kazoo's create_async chained two callbacks on its completion thread,
    its own and ours, before the loop heard of it)."""
    rounds = 10

    async def main() -> None:
        async with await _connect(zk_standalone, f"rt-{uuid.uuid4().hex[:10]}") as backend:
            await backend.release(await backend.acquire("orders", timeout=PROMPT))
            with recorded(backend.kazoo_client.handler.completion_queue, "put") as handed:
                for _ in range(rounds):
                    assert await backend.release(await backend.acquire("orders", timeout=PROMPT)) is True
            assert handed == [], f"{len(handed)} hand-overs to kazoo's completion thread for {rounds} acquire+release"

    run_guarded(main)


def test_the_time_limits_of_requests_share_one_timer_of_the_loop(zk_standalone: ZooKeeperTarget) -> None:
    """A request's time limit is not a timer of its own (a handle pushed into the loop's
    heap and cancelled once answered): ten acquire+release (thirty requests) set the one
    timer of the requests in flight at most twice (once more when it fired meanwhile)."""
    rounds = 10

    async def main() -> None:
        async with await _connect(zk_standalone, f"rt-{uuid.uuid4().hex[:10]}") as backend:
            await backend.release(await backend.acquire("orders", timeout=PROMPT))
            with recorded(asyncio.get_running_loop(), "call_at") as scheduled:
                for _ in range(rounds):
                    assert await backend.release(await backend.acquire("orders", timeout=PROMPT)) is True
            assert len(scheduled) <= 2, f"{len(scheduled)} timers for {rounds} acquire+release, at {scheduled[:6]}"
            assert len(backend._requests.expiries) == 0, "answered requests keep their time limits"

    run_guarded(main)


def test_a_release_cancelled_while_its_delete_is_in_flight_still_deletes(zk_standalone: ZooKeeperTarget,
                                                                          operator: Any) -> None:
    """Cancelled (twice, or by an ``asyncio.timeout`` that expires) with its Delete in
    flight, the release ends first, then raises; the node is gone and the grant released.
    (A Delete answered before the release awaited it leaves nothing to cancel: tried again.)"""

    async def cancelled_twice(backend: AsyncZooKeeperBackend, grant: fc.Grant) -> bool:
        releasing = asyncio.create_task(backend.release(grant))
        await asyncio.sleep(0)  # its first step sends the Delete and awaits the answer
        if not releasing.cancel():
            return False
        releasing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await releasing
        return True

    async def timed_out(backend: AsyncZooKeeperBackend, grant: fc.Grant) -> bool:
        try:
            async with asyncio.timeout(0):
                await backend.release(grant)
        except TimeoutError:
            return True
        return False

    async def main() -> None:
        async with await _connect(zk_standalone, f"rt-{uuid.uuid4().hex[:10]}") as backend:
            client = backend.kazoo_client
            deletes: list[Any] = []  # kazoo's results of the Deletes sent
            send_delete = client.delete_async

            def delete_async(path: str, *args: Any) -> Any:
                deletes.append(send_delete(path, *args))
                return deletes[-1]

            client.delete_async = delete_async
            for cancel in (cancelled_twice, timed_out):
                for _ in range(20):
                    grant = await backend.acquire("orders", timeout=PROMPT)
                    assert isinstance(grant, ZooKeeperGrant)
                    in_flight = await cancel(backend, grant)
                    assert deletes[-1].ready(), "the cancellation was raised before the Delete was answered"
                    assert grant.released
                    assert await asyncio.to_thread(operator.exists, grant.entry.path) is None
                    if in_flight:
                        break
                else:
                    raise AssertionError(f"{cancel.__name__}: every Delete was answered before it was awaited")
            assert await backend.try_acquire("orders") is not None

    run_guarded(main)


def test_an_answer_that_is_there_before_it_is_awaited_costs_no_loop_pass(zk_standalone: ZooKeeperTarget) -> None:
    async def main() -> None:
        async with await _connect(zk_standalone, f"rt-{uuid.uuid4().hex[:10]}") as backend:
            client = backend.kazoo_client

            def answered() -> Any:
                result = client.exists_async("/")
                # Stands for kazoo's thread outrunning the loop's (it blocks the loop for
                # one round trip, which only a test may do).
                result.wait(PROMPT)
                return result

            with _LoopCounts(asyncio.get_running_loop()) as counts:
                stat = await backend._requests.request("stat /", answered)
            assert stat is not None
            assert counts.passes == 0, f"{counts.passes} loop passes for an answer that was there"

    asyncio.run(main())
