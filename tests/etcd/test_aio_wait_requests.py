"""What an asyncio waiter behind another waiter costs, as the blocking one
(test_wait_requests.py, the same decisions: :mod:`fencing_coord.backends.etcd.waiting`):
its enqueue and the one look when its predecessor's DELETE wakes it, that look a
serializable read, one watch (its predecessor's); and the look that covers the watches'
creation, made later, still finds a predecessor that left in that gap."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from etcd3 import etcdrpc

import fencing_coord as fc
import fencing_coord.backends.etcd.waiting as etcd_waiting
from fencing_coord.backends.etcd.waitbook import ENDED
from fencing_coord.servers import wait_until
from fencing_coord.servers.etcd import EtcdMember

from .conftest import EtcdTarget, revoke_lease, rpc_counts, watch_count, watch_requests

PROMPT = 30.0


class _Watch:
    """A waiter's watch call, as the driver sees it, that records the watches it asks
    for, sets ``created`` once etcd confirmed ``count`` of them, and can run ``first``
    before its first request is sent; otherwise the call itself."""

    def __init__(self, call: Any, count: int, created: asyncio.Event,
                 first: Callable[[], Awaitable[object]] | None) -> None:
        self._call = call
        self._count = count
        self._created = created
        self._first = first
        self.asked: list[bytes] = []
        self.confirmed = 0

    async def write(self, request: Any) -> None:
        if self._first is not None:
            first, self._first = self._first, None
            await first()
        if request.HasField("create_request"):
            self.asked.append(bytes(request.create_request.key))
        await self._call.write(request)

    async def read(self) -> Any:
        response = await self._call.read()
        if getattr(response, "created", False):
            self.confirmed += 1
            if self.confirmed == self._count:
                self._created.set()
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


async def _wait_behind(waiter: Any, monkeypatch: pytest.MonkeyPatch, count: int = 1,
                       first: Callable[[], Awaitable[object]] | None = None) -> tuple[asyncio.Task[fc.Grant], _Watch]:
    """``waiter`` acquiring "orders" in a task, returned once ``count`` watches of its
    queue's watch stream exist (one: its predecessor's key), with that
    stream (see :class:`_Watch`; ``first`` runs before the stream's first request)."""
    streams: list[_Watch] = []
    created = asyncio.Event()
    real_watch = waiter._conn.watch

    def watch(requests: Any = None) -> tuple[int, Any]:
        index, call = real_watch(requests)
        if requests is not None or streams:  # the held keys' stream, or a later wait's
            return index, call
        streams.append(_Watch(call, count, created, first))
        return index, streams[-1]

    monkeypatch.setattr(waiter._conn, "watch", watch)
    task = asyncio.create_task(waiter.acquire("orders", PROMPT))
    await asyncio.wait_for(created.wait(), PROMPT)
    monkeypatch.setattr(waiter._conn, "watch", real_watch)
    return task, streams[0]


@asynccontextmanager
async def _backends(url: str, *ttls: int) -> AsyncIterator[list[Any]]:
    """Backends of one new namespace, one per ``ttl``."""
    namespace = f"awr-{uuid.uuid4().hex[:10]}"
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(await fc.aio.connect(url, namespace=namespace, ttl=ttl))
               for ttl in ttls]


def _txns(member: EtcdMember) -> int:
    return rpc_counts(member)["Txn"]


def test_a_waiter_behind_a_waiter_costs_its_enqueue_and_one_look(
        etcd_single: EtcdTarget, member: EtcdMember, monkeypatch: pytest.MonkeyPatch) -> None:
    """The revision moves between the second waiter's enqueue and its watch's creation:
    it does not look at once; its predecessor's DELETE wakes it for its one look."""
    monkeypatch.setattr(etcd_waiting, "GAP_CHECK", PROMPT)

    async def main() -> None:
        async with _backends(etcd_single.url, 3, 3, 3) as (holder, first, second):
            grant = await holder.acquire("orders", timeout=PROMPT)
            waiting_first, _ = await _wait_behind(first, monkeypatch)
            before = await asyncio.to_thread(_txns, member)
            put = etcdrpc.PutRequest(key=f"/unrelated/{uuid.uuid4().hex}".encode(), value=b"x")
            waiting_second, _ = await _wait_behind(second, monkeypatch, 1,
                                                   first=lambda: holder._conn.call("KV", "Put", put))
            assert await asyncio.to_thread(_txns, member) == before + 1, "the second waiter looked at once"
            await holder.release(grant)
            await first.release(await asyncio.wait_for(waiting_first, PROMPT))  # from the DELETE: no request
            taken = await asyncio.wait_for(waiting_second, PROMPT)
            # Its enqueue and its one look when woken.
            assert await asyncio.to_thread(_txns, member) == before + 2
            assert (await second.describe("orders")).holder == second.identity
            await second.release(taken)

    asyncio.run(main())


def test_the_look_after_a_wake_up_is_a_serializable_read(
        etcd_single: EtcdTarget, member: EtcdMember, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd_waiting, "GAP_CHECK", PROMPT)

    async def main() -> None:
        async with _backends(etcd_single.url, 3, 3, 3) as (holder, first, second):
            grant = await holder.acquire("orders", timeout=PROMPT)
            waiting_first, _ = await _wait_behind(first, monkeypatch)
            waiting_second, _ = await _wait_behind(second, monkeypatch, 1)
            sent: list[etcdrpc.TxnRequest] = []
            real_txn = second._conn.txn

            async def txn(request: etcdrpc.TxnRequest, **kwargs: Any) -> Any:
                sent.append(request)
                return await real_txn(request, **kwargs)

            monkeypatch.setattr(second._conn, "txn", txn)
            await holder.release(grant)
            await first.release(await asyncio.wait_for(waiting_first, PROMPT))
            taken = await asyncio.wait_for(waiting_second, PROMPT)
            assert len(sent) == 1, "the woken waiter sent more than its one look"
            assert all(op.request_range.serializable for op in sent[0].success)
            assert taken.token > grant.token
            await second.release(taken)

    asyncio.run(main())


def test_a_waiter_behind_a_waiter_watches_its_predecessor_only(
        etcd_single: EtcdTarget, member: EtcdMember, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every waiter watches its predecessor's key only: behind the holder as behind a
    waiter (a watch on its own key would cost one more watch message per wait)."""
    async def main() -> None:
        async with _backends(etcd_single.url, 3, 3, 3) as (holder, first, second):
            grant = await holder.acquire("orders", timeout=PROMPT)
            waiting_first, first_stream = await _wait_behind(first, monkeypatch)
            assert len(first_stream.asked) == 1  # behind the holder: the holder's key
            waiting_second, stream = await _wait_behind(second, monkeypatch, 1)
            assert len(stream.asked) == 1, "a waiter behind a waiter watches more than its predecessor"
            assert stream.asked != first_stream.asked
            await holder.release(grant)
            await first.release(await asyncio.wait_for(waiting_first, PROMPT))
            await second.release(await asyncio.wait_for(waiting_second, PROMPT))

    asyncio.run(main())


def _second_key(target: EtcdTarget, grant: Any) -> bytes:
    """The key of the first waiter behind ``grant``'s holder: the queue's second oldest."""
    client = target.client()
    try:
        found = sorted(client.get_prefix(grant.place.prefix), key=lambda kv: kv[1].create_revision)
    finally:
        client.close()
    return bytes(found[1][1].key)


def test_a_predecessor_gone_before_the_watches_exist_is_found_by_the_later_look(
        etcd_single: EtcdTarget, member: EtcdMember, monkeypatch: pytest.MonkeyPatch) -> None:
    """The waiting predecessor's key is deleted after the waiter read it and before its
    watch exists, so no event will come: the delayed look (``GAP_CHECK`` into the
    wait, kept by the wait itself) finds the holder in its place, and the holder's release
    reaches the waiter long before a silent wait's re-check."""
    monkeypatch.setattr(etcd_waiting, "GAP_CHECK", 0.2)

    async def main() -> None:
        # The second waiter re-checks a silent wait only after 60 s.
        async with _backends(etcd_single.url, 3, 3, 30) as (holder, first, second):
            grant = await holder.acquire("orders", timeout=PROMPT)
            waiting_first, _ = await _wait_behind(first, monkeypatch)
            delete = etcdrpc.DeleteRangeRequest(key=await asyncio.to_thread(_second_key, etcd_single, grant))
            waiting_second, _ = await _wait_behind(second, monkeypatch, 1,
                                                   first=lambda: holder._conn.call("KV", "DeleteRange", delete))
            await holder.release(grant)
            released = time.monotonic()
            taken = await asyncio.wait_for(waiting_second, PROMPT)
            assert time.monotonic() - released < 10.0
            await second.release(taken)
            await first.release(await asyncio.wait_for(waiting_first, PROMPT))

    asyncio.run(main())


def test_a_waiter_whose_key_went_while_it_waited_is_not_granted_by_the_holders_delete(
        etcd_single: EtcdTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the blocking driver's test: the waiter's lease is revoked (its key deleted)
    while it waits behind the holder, then the holder releases. Its one watcher reports
    its own key's deletion before the holder's, so it looks, finds its key gone and
    queues again on a new lease; it is not granted on the revoked one."""
    async def main() -> None:
        async with _backends(etcd_single.url, 30, 30) as (holder, waiter):
            grant = await holder.acquire("orders", timeout=PROMPT)
            waiting, _ = await _wait_behind(waiter, monkeypatch)
            revoked = waiter.lease_id
            assert revoked is not None
            await asyncio.to_thread(revoke_lease, etcd_single, revoked)
            await holder.release(grant)
            taken = await asyncio.wait_for(waiting, PROMPT)
            assert waiter.lease_id not in (None, revoked), "granted on the revoked lease"
            assert taken.token > grant.token
            assert not taken.lost
            assert (await waiter.describe("orders")).holder == waiter.identity
            await waiter.release(taken)

    asyncio.run(main())


def test_the_waits_of_one_backend_share_one_watch_stream(
        etcd_single: EtcdTarget, member: EtcdMember, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tasks of one backend waiting on one lock add their watches to one long-lived
    stream (as the blocking backend's, test_backend.py): a stream per wait cost the
    event loop its setup, first write and cancel, about a fifth of its time under
    contention. Four tasks queued behind a holder, three rounds: twelve waits, and the
    waiter opens two streams at most (the waits' and its held keys')."""
    async def main() -> None:
        async with _backends(etcd_single.url, 3, 3) as (holder, waiter):
            opened: list[Any] = []
            real_watch = waiter._conn.watch

            def watch(requests: Any = None) -> tuple[int, Any]:
                opened.append(requests)
                index, call = real_watch(requests)
                return index, call

            monkeypatch.setattr(waiter._conn, "watch", watch)
            before = (await asyncio.to_thread(rpc_counts, member))["Watch"]
            for _ in range(3):
                grant = await holder.acquire("orders", timeout=PROMPT)
                queued = [asyncio.Event() for _ in range(4)]
                pending = {asyncio.create_task(waiter.acquire("orders", PROMPT, on_queued=event.set))
                           for event in queued}
                for event in queued:
                    await asyncio.wait_for(event.wait(), PROMPT)  # behind the holder: each waits, with a watch
                await holder.release(grant)
                while pending:
                    done, pending = await asyncio.wait(pending, timeout=PROMPT, return_when=asyncio.FIRST_COMPLETED)
                    assert done, "a waiter was not served"
                    for task in done:
                        await waiter.release(task.result())
            assert len(opened) <= 2, f"the waiter opened {len(opened)} watch streams"
            # The waiter's two, and the holder's held keys' stream if a grant was held 0.1 s.
            assert (await asyncio.to_thread(rpc_counts, member))["Watch"] - before <= 3

    asyncio.run(main())


async def _until(check: Callable[[], bool], what: str) -> None:
    """Poll the server (no event tells of its gauges) until ``check()``, PROMPT at most."""
    await asyncio.to_thread(wait_until, check, PROMPT, what, 0.01)


def test_a_cancelled_waiters_watch_is_cancelled_with_the_next_create(
        etcd_single: EtcdTarget, member: EtcdMember) -> None:
    """A task cancelled while it waits closes its watch on the shared stream: the
    stream lives on, and the watch's cancel goes out with the next wait's create (as in
    the blocking front end), not as a message of its own."""
    async def main() -> None:
        async with _backends(etcd_single.url, 3, 3) as (holder, waiter):
            base = await asyncio.to_thread(watch_count, member)
            grant = await holder.acquire("orders", timeout=PROMPT)
            # The holder's held key is watched 0.1 s into its grant: counted before ours.
            await _until(lambda: watch_count(member) == base + 1, "the held key was never watched")
            first = asyncio.create_task(waiter.acquire("orders", PROMPT))
            await _until(lambda: watch_count(member) == base + 2, "the first waiter's watch was never created")
            sent = await asyncio.to_thread(watch_requests, member)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            book = waiter._waits._stream.book
            assert len(book._cancels) == 1, "the cancel was not deferred"
            assert await asyncio.to_thread(watch_requests, member) == sent
            assert await asyncio.to_thread(watch_count, member) == base + 2
            second = asyncio.create_task(waiter.acquire("orders", PROMPT))
            await _until(lambda: watch_requests(member) == sent + 2, "no cancel and create came")
            # etcd answers in order: once the create is answered, the cancel before it was handled.
            await _until(lambda: not book._pending, "the second wait's create was never answered")
            assert not book._cancels
            assert await asyncio.to_thread(watch_count, member) == base + 2, "the cancelled watch lives on"
            await holder.release(grant)
            await waiter.release(await asyncio.wait_for(second, PROMPT))

    asyncio.run(main())


def test_closing_the_stream_ends_a_wait_whose_stream_has_not_started_yet(etcd_single: EtcdTarget) -> None:
    """A wait that opened the stream, closed in the same pass of the loop (its reader
    task cancelled before its first step): the wait still gets ENDED, not silence."""
    async def main() -> None:
        async with _backends(etcd_single.url, 3) as (backend,):
            waits = backend._waits
            create = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(key=b"never"))
            watch = waits.watch(create)
            await waits.close()
            began = time.monotonic()
            assert await watch.get(PROMPT) is ENDED
            assert time.monotonic() - began < 1

    asyncio.run(main())
