"""What a waiter behind another waiter costs (issue 13): its enqueue and the one look when
its predecessor's DELETE wakes it, no look while it sets up its watches, and no thread of
ours per wait; and the look that covers the watches' creation, now made later, still
finds a predecessor that left in that gap."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from etcd3 import etcdrpc

import fencing_coord as fc
import fencing_coord.backends.etcd.waiting as etcd_waiting
from fencing_coord.backends.etcd import EtcdBackend, EtcdGrant
from fencing_coord.servers.etcd import EtcdMember

from .conftest import Connect, EtcdTarget, acquire_watched, revoke, rpc_counts, watch_count

PROMPT = 30.0


def _in_thread(fn: Callable[[], fc.Grant]) -> Future[fc.Grant]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


def _until_watching(member: EtcdMember, at_least: int) -> None:
    deadline = time.monotonic() + PROMPT
    while watch_count(member) < at_least:
        assert time.monotonic() < deadline, "the waiter never watched"
        time.sleep(0.01)  # polling the server's gauge: no event tells of it


def _wait_behind(member: EtcdMember, waiter: EtcdBackend, watches: int = 1) -> Future[fc.Grant]:
    """``waiter`` acquiring "orders" in a thread, returned once its ``watches`` exist
    (one: its predecessor's key)."""
    watchers = watch_count(member)
    queued = threading.Event()
    future = _in_thread(lambda: waiter.acquire("orders", PROMPT, on_queued=queued.set))
    assert queued.wait(PROMPT)
    _until_watching(member, watchers + watches)
    return future


def _written_to_before_watching(waiter: EtcdBackend, monkeypatch: pytest.MonkeyPatch,
                                write: Callable[[], object]) -> None:
    """Make ``waiter``'s watch streams open only after ``write()`` (which moves the
    revision): the gap between its look and its watches is then never empty."""
    real_watch = waiter._conn.watch

    def watch(requests: Iterator[object], timeout: float | None = None) -> object:
        write()
        return real_watch(requests, timeout)

    monkeypatch.setattr(waiter._conn, "watch", watch)


def _txns(member: EtcdMember) -> int:
    return rpc_counts(member)["Txn"]


def test_a_waiter_behind_a_waiter_costs_its_enqueue_and_one_look(
        member: EtcdMember, connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a predecessor that itself waits, the revision moved between the waiter's
    enqueue and its watches' creation: the waiter does not look at once (it used to, one
    Txn more per contended grant); its predecessor's DELETE wakes it for its one look."""
    monkeypatch.setattr(etcd_waiting, "GAP_CHECK", PROMPT)
    holder, first, second = connect(), connect(), connect()
    grant = acquire_watched(member, holder, "orders")
    waiting_first = _wait_behind(member, first)
    before = _txns(member)
    put = etcdrpc.PutRequest(key=f"/unrelated/{uuid.uuid4().hex}".encode(), value=b"x")
    _written_to_before_watching(second, monkeypatch, lambda: holder._conn.call("KV", "Put", put))
    waiting_second = _wait_behind(member, second, watches=1)
    assert _txns(member) == before + 1, "the second waiter looked while setting up its watch"
    holder.release(grant)
    first.release(waiting_first.result(PROMPT))  # granted by the holder's DELETE: no request
    taken = waiting_second.result(PROMPT)
    assert _txns(member) == before + 2  # its enqueue and its one look when woken
    assert second.describe("orders").holder == second.identity
    second.release(taken)


def test_no_thread_is_started_per_wait(member: EtcdMember, connect: Connect) -> None:
    """The re-check of a silent wait is the watch call's gRPC deadline, not a timer
    thread started for every wait."""
    holder, waiter = connect(), connect()
    grant = acquire_watched(member, holder, "orders")
    waiting = _wait_behind(member, waiter)
    timers = [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]
    assert timers == [], f"a wait started timer threads: {timers}"
    holder.release(grant)
    waiter.release(waiting.result(PROMPT))


def test_a_predecessor_gone_before_the_watches_exist_is_found_by_the_later_look(
        member: EtcdMember, connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """The waiting predecessor's key is deleted after the waiter read it and before its
    watch exists, so no event will come: the delayed look finds the holder in its place,
    and the holder's release reaches the waiter long before a silent wait's re-check."""
    monkeypatch.setattr(etcd_waiting, "GAP_CHECK", 0.2)
    holder, first = connect(), connect()
    second = connect(ttl=30)  # re-checks a silent wait only after 60 s
    grant = acquire_watched(member, holder, "orders")
    waiting_first = _wait_behind(member, first)
    keys = [kv.key for kv in holder._queues.members(grant.place.prefix)]
    assert len(keys) == 2
    delete = etcdrpc.DeleteRangeRequest(key=keys[1])  # the first waiter's key, out of band
    _written_to_before_watching(second, monkeypatch, lambda: holder._conn.call("KV", "DeleteRange", delete))
    queued = threading.Event()
    waiting_second = _in_thread(lambda: second.acquire("orders", PROMPT, on_queued=queued.set))
    assert queued.wait(PROMPT)
    holder.release(grant)
    released = time.monotonic()
    taken = waiting_second.result(PROMPT)
    assert time.monotonic() - released < 10.0
    second.release(taken)
    first.release(waiting_first.result(PROMPT))


def test_the_look_after_a_wake_up_is_a_serializable_read(
        member: EtcdMember, connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """Woken by its predecessor's DELETE, a waiter reads its place serializably: any
    state at least as new as the event shows whether a key older than ours remains
    (none is ever created), and a linearizable read would wait behind the other
    contenders' writes in etcd's raft loop."""
    monkeypatch.setattr(etcd_waiting, "GAP_CHECK", PROMPT)
    holder, first, second = connect(), connect(), connect()
    grant = acquire_watched(member, holder, "orders")
    waiting_first = _wait_behind(member, first)
    waiting_second = _wait_behind(member, second, watches=1)
    sent: list[etcdrpc.TxnRequest] = []
    real_txn = second._conn.txn

    def txn(request: etcdrpc.TxnRequest, **kwargs: object) -> object:
        sent.append(request)
        return real_txn(request, **kwargs)

    monkeypatch.setattr(second._conn, "txn", txn)
    holder.release(grant)
    first.release(waiting_first.result(PROMPT))
    taken = waiting_second.result(PROMPT)
    assert len(sent) == 1, "the woken waiter sent more than its one look"
    assert all(op.request_range.serializable for op in sent[0].success)
    assert taken.token > grant.token
    second.release(taken)


def test_a_waiter_behind_a_waiter_watches_its_predecessor_only(member: EtcdMember, connect: Connect,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own key's watch only serves a grant from the holder's DELETE (behind the
    holder); behind a waiter it would cost one more watch message per wait: the look
    every wake-up makes finds the key gone, and a lost lease wakes it via the session."""
    holder, first, second = connect(), connect(), connect()
    grant = acquire_watched(member, holder, "orders")
    waiting_first = _wait_behind(member, first)  # behind the holder: one watch
    asked: list[bytes] = []  # the keys of every watch the second waiter asks for
    real_watch = second._conn.watch

    def watch(requests: Iterator[etcdrpc.WatchRequest], timeout: float | None = None) -> object:
        def recorded() -> Iterator[etcdrpc.WatchRequest]:
            for request in requests:
                if request.HasField("create_request"):
                    asked.append(request.create_request.key)
                yield request
        return real_watch(recorded(), timeout)

    monkeypatch.setattr(second._conn, "watch", watch)
    waiting_second = _wait_behind(member, second, watches=1)
    holder.release(grant)
    first_grant = waiting_first.result(PROMPT)
    assert isinstance(first_grant, EtcdGrant)
    first.release(first_grant)
    taken = waiting_second.result(PROMPT)
    # Counted once its wait is over, so a watch asked for later in that wait counts too.
    assert asked == [first_grant.place.key], "a waiter behind a waiter watches more than its predecessor"
    second.release(taken)


class _LeaseGoesThenHolder:
    """The watch call of a waiter behind the holder: once its watch is confirmed, the
    waiter's lease is revoked (its key goes with it) and then the holder releases."""

    def __init__(self, call: Any, revoke_then_release: Callable[[], object]) -> None:
        self._call = call
        self._revoke_then_release = revoke_then_release

    def __iter__(self) -> Iterator[Any]:
        done = False
        for response in self._call:
            if response.created and not done:
                done = True
                self._revoke_then_release()
            yield response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


def test_a_waiter_whose_key_went_while_it_waited_is_not_granted_by_the_holders_delete(
        etcd_single: EtcdTarget, member: EtcdMember, connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """The waiter's lease is revoked (its key deleted) while it waits behind the holder,
    and the holder then releases: its one watcher reports its own key's DELETE first,
    which wakes it, and its look finds its key gone, so it queues again on a new lease.
    A grant from the holder's DELETE once trusted a second watcher, on the waiter's own
    key, to report that key's deletion first: etcd orders one watcher's events, not two
    watchers' on one stream, and it delivered the revoke's delete after the holder's
    later one (the waiter was granted on the revoked lease in about 1 run in 15 of
    test_waiter_whose_lease_is_revoked_queues_again)."""
    holder, waiter = connect(), connect()
    grant = acquire_watched(member, holder, "orders")
    real_watch = waiter._conn.watch
    revoked: list[int] = []

    def revoke_then_release() -> None:
        revoked.append(revoke(etcd_single, waiter))
        holder.release(grant)

    def watch(requests: Iterator[etcdrpc.WatchRequest], timeout: float | None = None) -> tuple[int, Any]:
        index, call = real_watch(requests, timeout)
        if revoked:  # the waiter's next wait, after it queued again
            return index, call
        return index, _LeaseGoesThenHolder(call, revoke_then_release)

    monkeypatch.setattr(waiter._conn, "watch", watch)
    taken = waiter.acquire("orders", timeout=PROMPT)
    assert revoked, "the scenario did not happen: the waiter never watched"
    assert waiter.lease_id not in (None, *revoked), "granted on the revoked lease"
    assert taken.token > grant.token
    assert not taken.lost
    assert waiter.describe("orders").holder == waiter.identity
    waiter.release(taken)
