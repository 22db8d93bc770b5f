"""The asyncio ZooKeeper driver hands the lock over as the blocking one does (see
``backends/zookeeper/handoff.py``): a waiter whose only older contender is the holder is
granted from the holder's deletion event, with no request of its own; never on a node
deleted out of band; and a cancellation during that wait still withdraws its node."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.backends.zookeeper.grant import ZooKeeperGrant
from fencing_coord.testing.aio_fixtures import run_guarded

from ..spies import recorded
from .conftest import ZooKeeperTarget
from .test_backend import _eventually, _ordered_children, _Requests, _watched_by
from .test_listing_behind import _WakeSends

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0

Pair = tuple[AsyncZooKeeperBackend, AsyncZooKeeperBackend]


@asynccontextmanager
async def _pair(target: ZooKeeperTarget) -> AsyncIterator[Pair]:
    namespace = f"aio-handoff-{uuid.uuid4().hex[:10]}"
    async with await fc.aio.connect(target.url, namespace=namespace, ttl=4) as holder, \
            await fc.aio.connect(target.url, namespace=namespace, ttl=4) as waiter:
        assert isinstance(holder, AsyncZooKeeperBackend)
        assert isinstance(waiter, AsyncZooKeeperBackend)
        yield holder, waiter


@asynccontextmanager
async def trio(target: ZooKeeperTarget) -> AsyncIterator[tuple[AsyncZooKeeperBackend, AsyncZooKeeperBackend,
                                                                AsyncZooKeeperBackend]]:
    """Three clients of ``target`` in a new namespace: a holder, the next in line, the last."""
    namespace = f"aio-handoff-{uuid.uuid4().hex[:10]}"
    async with await fc.aio.connect(target.url, namespace=namespace, ttl=4) as holder, \
            await fc.aio.connect(target.url, namespace=namespace, ttl=4) as next_, \
            await fc.aio.connect(target.url, namespace=namespace, ttl=4) as last:
        assert isinstance(holder, AsyncZooKeeperBackend)
        assert isinstance(next_, AsyncZooKeeperBackend)
        assert isinstance(last, AsyncZooKeeperBackend)
        yield holder, next_, last


async def hand_down(holder: AsyncZooKeeperBackend, next_: AsyncZooKeeperBackend, grant: fc.Grant,
                    first_task: asyncio.Task[fc.Grant],
                    second_task: asyncio.Task[fc.Grant]) -> tuple[fc.Grant, fc.Grant]:
    """The holder releases ``grant``; the next in line (``first_task``) is granted and
    releases; the last (``second_task``) is granted. Returns the last two grants."""
    assert await holder.release(grant) is True
    async with asyncio.timeout(PROMPT):
        taken = await first_task
    assert await next_.release(taken) is True
    async with asyncio.timeout(PROMPT):
        last_taken = await second_task
    return taken, last_taken


async def _queued_behind(waiter: AsyncZooKeeperBackend, name: str) -> asyncio.Task[fc.Grant]:
    queued = asyncio.Event()
    task = asyncio.create_task(waiter.acquire(name, timeout=PROMPT, on_queued=queued.set))
    async with asyncio.timeout(PROMPT):
        await queued.wait()
    return task


async def _until_watched(target: ZooKeeperTarget, waiter: AsyncZooKeeperBackend, path: str) -> None:
    # The server's watch table has no event to await: read it from a thread.
    await asyncio.to_thread(_eventually, lambda: _watched_by(target, waiter.session_id, path))


async def _next_in_line(target: ZooKeeperTarget, holder: AsyncZooKeeperBackend, waiter: AsyncZooKeeperBackend,
                        operator: Any) -> tuple[fc.Grant, str, asyncio.Task[fc.Grant]]:
    """The holder holds "orders"; the waiter waits as the next in line, watching the
    holder's node. Returns the holder's grant, the parent's path and the waiting task."""
    grant = await holder.acquire("orders", timeout=PROMPT)
    parent = holder.lock_path("orders")
    held = f"{parent}/{(await asyncio.to_thread(_ordered_children, operator, parent))[0]}"
    task = await _queued_behind(waiter, "orders")
    await _until_watched(target, waiter, held)
    return grant, parent, task


def test_a_next_waiter_is_granted_from_the_delete_event(local: ZooKeeperTarget, operator: Any) -> None:
    """The holder's Delete is the whole handoff: the waiter sends nothing (it used to
    list the queue again: a GetChildren2)."""

    async def main() -> None:
        async with _pair(local) as (holder, waiter):
            holder_sent, waiter_sent = _Requests(holder), _Requests(waiter)
            grant, _, task = await _next_in_line(local, holder, waiter, operator)
            marks = len(holder_sent.sent), len(waiter_sent.sent)
            assert await holder.release(grant) is True
            async with asyncio.timeout(PROMPT):
                taken = await task
            assert holder_sent.since(marks[0]) == ["Delete"]
            assert waiter_sent.since(marks[1]) == []
            assert taken.token > grant.token
            assert (await waiter.describe("orders")).holder == waiter.identity
            assert await waiter.release(taken) is True

    run_guarded(main)


def test_a_next_waiter_whose_node_was_deleted_is_not_granted_by_the_event(local: ZooKeeperTarget,
                                                                          operator: Any) -> None:
    """A waiter whose node was deleted out of band queues again and is granted on a new
    node, never on the deleted one."""

    async def main() -> None:
        async with _pair(local) as (holder, waiter):
            grant, parent, task = await _next_in_line(local, holder, waiter, operator)
            mine = f"{parent}/{(await asyncio.to_thread(_ordered_children, operator, parent))[1]}"
            await asyncio.to_thread(operator.delete, mine)
            assert await holder.release(grant) is True
            async with asyncio.timeout(PROMPT):
                taken = await task
            assert isinstance(taken, ZooKeeperGrant)
            assert taken.entry.path != mine
            assert await asyncio.to_thread(operator.exists, taken.entry.path) is not None
            assert not taken.lost
            assert await waiter.release(taken) is True

    run_guarded(main)


def test_cancelling_a_next_waiter_withdraws_its_node(local: ZooKeeperTarget, operator: Any) -> None:
    """Cancelled while it waits as the next in line, the waiter deletes its node: the
    holder's release grants nobody, and the next contender gets the lock at once."""

    async def main() -> None:
        async with _pair(local) as (holder, waiter):
            grant, parent, task = await _next_in_line(local, holder, waiter, operator)
            queued = await asyncio.to_thread(_ordered_children, operator, parent)
            assert len(queued) == 2
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(_ordered_children, operator, parent) == queued[:1]
            assert await holder.release(grant) is True
            again = await holder.try_acquire("orders")
            assert again is not None
            assert await holder.release(again) is True
            assert await asyncio.to_thread(_ordered_children, operator, parent) == []

    run_guarded(main)


def test_a_waiters_wake_up_reaches_the_loop_from_kazoos_connection_thread(local: ZooKeeperTarget,
                                                                          operator: Any) -> None:
    """The watches that wake a waiter (next in line: its predecessor's and its own node's;
    further back: its predecessor's) run on kazoo's connection thread as the event is
    read, not through kazoo's callback thread: one thread hop to the loop per wake-up."""

    async def main() -> None:
        async with trio(local) as (holder, next_, last):
            with recorded(next_.kazoo_client.handler.callback_queue, "put") as nexts, \
                    recorded(last.kazoo_client.handler.callback_queue, "put") as lasts:
                grant = await holder.acquire("orders", timeout=PROMPT)
                parent = holder.lock_path("orders")
                first_task = await _queued_behind(next_, "orders")
                second_task = await _queued_behind(last, "orders")
                held, nexts_node, _ = (f"{parent}/{c}" for c in await asyncio.to_thread(_ordered_children, operator,
                                                                                          parent))
                await _until_watched(local, next_, held)
                await _until_watched(local, last, nexts_node)
                taken, last_taken = await hand_down(holder, next_, grant, first_task, second_task)
            handed = nexts + lasts
            assert handed == [], f"{len(handed)} watch callbacks went through kazoo's callback thread"
            assert last_taken.token > taken.token > grant.token
            assert await last.release(last_taken) is True

    run_guarded(main)


def test_a_waiter_next_in_line_wakes_kazoos_thread_once_for_its_two_watches(local: ZooKeeperTarget) -> None:
    """A waiter sends Create2 and GetChildren2 together, then the Exists on its own node
    and its predecessor's together: two wake-ups of kazoo's thread (four before), and
    none more until it is granted from the holder's deletion event."""

    async def main() -> None:
        async with _pair(local) as (holder, waiter):
            grant = await holder.acquire("orders", timeout=PROMPT)
            sent, wakes = _Requests(waiter), _WakeSends(waiter)
            queued = asyncio.Event()
            task = asyncio.create_task(waiter.acquire("orders", timeout=PROMPT, on_queued=queued.set))
            async with asyncio.timeout(PROMPT):
                await queued.wait()
            assert isinstance(grant, ZooKeeperGrant)
            await _until_watched(local, waiter, grant.entry.path)
            assert await holder.release(grant) is True
            async with asyncio.timeout(PROMPT):
                taken = await task
            assert sent.since(0) == ["Create2", "GetChildren2", "Exists", "Exists"]
            assert wakes.count == 2, f"kazoo's thread woken {wakes.count} times"
            assert await waiter.release(taken) is True

    run_guarded(main)
