"""The asyncio etcd driver sends the blocking driver's requests, no more: an uncontended
acquire is one Txn and a release one DeleteRange, and a waiter whose predecessor was the
holder is granted from the holder's DELETE event, with no request of its own."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

import fencing_coord as fc

from .conftest import EtcdTarget, rpc_counts, watch_count

PROMPT = 30.0


def _kv_calls(target: EtcdTarget) -> dict[str, int]:
    assert target.cluster is not None
    counts = rpc_counts(target.cluster.members[0])
    return {m: counts[m] for m in ("Txn", "Range", "Put", "DeleteRange")}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {m: after[m] - before[m] for m in before if after[m] != before[m]}


@pytest.fixture
def counted(etcd_single: EtcdTarget) -> EtcdTarget:
    if etcd_single.cluster is None:
        pytest.skip("counts requests on the server's /metrics; not available for a container")
    return etcd_single


def test_uncontended_acquire_and_release_are_one_request_each(counted: EtcdTarget) -> None:
    async def main() -> None:
        namespace = f"rt-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(counted.url, namespace=namespace) as backend:
            await backend.release(await backend.acquire("warm-up", timeout=PROMPT))
            start = await asyncio.to_thread(_kv_calls, counted)
            grant = await backend.acquire("orders", timeout=PROMPT)
            acquired = await asyncio.to_thread(_kv_calls, counted)
            assert await backend.release(grant) is True
            released = await asyncio.to_thread(_kv_calls, counted)
            assert await backend.try_acquire("orders") is not None
            tried = await asyncio.to_thread(_kv_calls, counted)
        assert _delta(start, acquired) == {"Txn": 1}
        assert _delta(acquired, released) == {"DeleteRange": 1}
        assert _delta(released, tried) == {"Txn": 1}

    asyncio.run(main())


def test_a_first_waiter_is_granted_from_the_watch_event(counted: EtcdTarget) -> None:
    """The holder's delete is the whole handoff (as the blocking driver's, whose test
    says why that is sound: one watcher covers the holder's key and the waiter's)."""
    assert counted.cluster is not None
    member = counted.cluster.members[0]

    async def main() -> None:
        namespace = f"rt-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(counted.url, namespace=namespace) as holder, \
                await fc.aio.connect(counted.url, namespace=namespace) as waiter:
            watchers = await asyncio.to_thread(watch_count, member)
            grant = await holder.acquire("orders", timeout=PROMPT)
            queued = asyncio.Event()
            task = asyncio.create_task(waiter.acquire("orders", PROMPT, on_queued=queued.set))
            await asyncio.wait_for(queued.wait(), PROMPT)
            deadline = time.monotonic() + PROMPT
            # The holder's held-key watch and the waiter's watch exist (not only its
            # stream: on a loaded machine the release could otherwise overtake its
            # creation, and the waiter look once more).
            while await asyncio.to_thread(watch_count, member) < watchers + 2:
                assert time.monotonic() < deadline, "the waiter never watched"
                await asyncio.sleep(0.01)  # polling the server's gauge: no event tells of it
            before = await asyncio.to_thread(_kv_calls, counted)
            await holder.release(grant)
            taken = await asyncio.wait_for(task, PROMPT)
            assert _delta(before, await asyncio.to_thread(_kv_calls, counted)) == {"DeleteRange": 1}
            assert taken.token > grant.token
            assert (await waiter.describe("orders")).holder == waiter.identity
            await waiter.release(taken)

    asyncio.run(main())


def test_a_wait_builds_no_queue_read_again_and_a_release_builds_no_wait(etcd_single: EtcdTarget,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU, not requests: a queue's unchanging reads are built once per queue (a protobuf
    message costs microseconds), and a release sends its delete without setting up a
    wait in the queue."""
    from fencing_coord.backends.etcd.queue import Queues

    lines: list[bytes] = []
    line = Queues.line

    def counted_line(self: Queues, prefix: bytes, *args: object) -> object:
        lines.append(prefix)
        return line(self, prefix, *args)

    async def main() -> None:
        namespace = f"rt-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, namespace=namespace) as backend:
            first = await backend.acquire("orders", timeout=PROMPT)
            await backend.release(first)
            second = await backend.acquire("orders", timeout=PROMPT)
            queues = backend._queues  # type: ignore[attr-defined]
            assert queues.reads(first.place.prefix) is queues.reads(second.place.prefix)  # type: ignore[attr-defined]
            monkeypatch.setattr(Queues, "line", counted_line)
            assert await backend.release(second) is True
            assert lines == [], "the release set up a wait in the queue"

    asyncio.run(main())


def test_an_uncontended_acquire_and_release_make_no_task_of_ours(etcd_single: EtcdTarget) -> None:
    """Tasks cost event-loop passes: the uncontended path awaits its two requests
    directly (grpc.aio makes one task per unary call itself; those are not counted), and
    the release is carried through cancellations without a task of its own."""
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        code = getattr(coro, "cr_code", None)
        if code is None or "/grpc/" not in code.co_filename:
            made.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main() -> None:
        namespace = f"rt-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, namespace=namespace) as backend:
            await backend.release(await backend.acquire("warm-up", timeout=PROMPT))
            loop = asyncio.get_running_loop()
            loop.set_task_factory(factory)
            try:
                for _ in range(3):
                    assert await backend.release(await backend.acquire("orders", timeout=PROMPT)) is True
            finally:
                loop.set_task_factory(None)
            assert made == [], f"the uncontended path made tasks: {made}"

    asyncio.run(main())


def test_a_release_cancelled_while_its_delete_is_in_flight_still_deletes(etcd_single: EtcdTarget) -> None:
    """The release's DeleteRange is awaited without a task: a cancellation (twice) while
    it is in flight is raised only after the delete ended, and the lock is free."""

    async def main() -> None:
        namespace = f"rt-{uuid.uuid4().hex[:10]}"
        async with (await fc.aio.connect(etcd_single.url, namespace=namespace) as backend,
                    await fc.aio.connect(etcd_single.url, namespace=namespace) as other):
            for steps in range(1, 5):  # (cancelled before its first step, a task never runs)
                grant = await backend.acquire("orders", timeout=PROMPT)
                task = asyncio.create_task(backend.release(grant))
                for _ in range(steps):
                    await asyncio.sleep(0)  # cancel at a different point of the delete each time
                in_flight = task.cancel()
                await asyncio.sleep(0)
                task.cancel()
                if in_flight:
                    with pytest.raises(asyncio.CancelledError):
                        await task
                else:
                    assert await task is True
                taken = await other.try_acquire("orders")
                assert taken is not None, f"the cancelled release did not delete (cancelled after {steps} steps)"
                assert await other.release(taken) is True
                assert grant.released

    asyncio.run(main())
