"""The waiter behind the holder is granted from the holder's DELETE event (issue 13):
its one watcher covers the holder's key and its own, so etcd, which orders one
watcher's events, reports a deletion of its own key first. What that watcher reports
about other keys in its range does not end the wait; a deletion of our own key, or a
DELETE read before the watcher covered everything since our last read, does not grant."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from etcd3 import etcdrpc
from etcd3.etcdrpc import kv_pb2

import fencing_coord.backends.etcd.waiting as etcd_waiting
from fencing_coord.backends.etcd.places import LineRequests, Place, QueueReads
from fencing_coord.backends.etcd.session import Lease
from fencing_coord.backends.etcd.waitbook import ENDED
from fencing_coord.backends.etcd.waiting import Step, WatchedWait
from fencing_coord.deadlines import RequestBudget
from fencing_coord.servers.etcd import EtcdMember

from .conftest import Connect, acquire_watched
from .test_wait_requests import PROMPT, _txns, _wait_behind, _written_to_before_watching

PREFIX = b"/ns/locks/orders/"


def _line() -> LineRequests:
    return LineRequests(PREFIX, QueueReads(PREFIX), "orders", b"me", RequestBudget.until(None, 5.0))


def _behind_the_holder(seen: int = 10) -> Place:
    lease = Lease(id=0x2A, ttl=10, confirmed_until=0.0)
    return Place(PREFIX + b"2a-0", 9, lease, 0, predecessor=PREFIX + b"1f-0", seen=seen, head_before=True)


def _deleted(revision: int, *keys: bytes, header: int = 0) -> etcdrpc.WatchResponse:
    """A response deleting ``keys`` at ``revision``; its header says ``header`` (default:
    the same; etcd's catch-up responses carry its current revision there)."""
    return etcdrpc.WatchResponse(
        header=etcdrpc.ResponseHeader(revision=header or revision),
        events=[kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=kv_pb2.KeyValue(key=key, mod_revision=revision))
                for key in keys])


def _created(revision: int) -> etcdrpc.WatchResponse:
    return etcdrpc.WatchResponse(header=etcdrpc.ResponseHeader(revision=revision), created=True)


# -- the rules, without a server -------------------------------------------------------------------


def test_behind_the_holder_one_watcher_covers_both_keys() -> None:
    place = _behind_the_holder()
    request = LineRequests.watch_request(place)
    create = request.create_request
    assert (create.key, create.range_end) == (PREFIX + b"1f-0", PREFIX + b"2a-0\0")
    assert list(create.filters) == [etcdrpc.WatchCreateRequest.NOPUT]


def test_the_holders_delete_grants_once_the_watcher_covers_everything_since_our_read() -> None:
    line, place = _line(), _behind_the_holder(seen=10)
    wait = WatchedWait(line, place)
    assert wait.read(_created(10)) is Step.READ_ON  # nothing written since our read: covered
    assert wait.read(_deleted(11, PREFIX + b"1f-0", header=15)) is Step.END
    granted = line.granted_by_event(place)
    assert granted is not None
    assert granted.first
    assert granted.key == place.key
    assert granted.seen == 11, "seen at the DELETE's revision: its held watch starts right after it"
    assert line.granted_by_event(place) is None, "told once"


def test_a_newer_contenders_delete_in_the_range_does_not_end_the_wait() -> None:
    line, place = _line(), _behind_the_holder()
    wait = WatchedWait(line, place)
    wait.read(_created(10))
    assert wait.read(_deleted(11, PREFIX + b"20-0")) is Step.READ_ON
    assert not wait.looked
    assert line.granted_by_event(place) is None


def test_the_gap_look_comes_due_with_its_time_not_with_a_response() -> None:
    """Behind a waiting predecessor, the look that covers the watch's creation is made
    ``GAP_CHECK`` into the wait (the wait keeps the time: on the shared stream the
    answer to a progress request is no one wait's). No response makes it due: not
    events that do not end the wait, nor an eventless one."""
    lease = Lease(id=0x2A, ttl=10, confirmed_until=0.0)
    place = Place(PREFIX + b"2a-0", 9, lease, 0, predecessor=PREFIX + b"1f-0", seen=10, head_before=False)
    wait = WatchedWait(_line(), place)
    wait.start(100.0, 5.0, None)
    assert wait.due(100.0) is Step.READ_ON
    assert wait.read_for == pytest.approx(etcd_waiting.GAP_CHECK)
    wait.read(_created(12))
    assert not wait.progressed
    assert wait.read(_deleted(13, PREFIX + b"30-0")) is Step.READ_ON
    assert wait.read(etcdrpc.WatchResponse(header=etcdrpc.ResponseHeader(revision=13))) is Step.READ_ON
    assert not wait.progressed
    assert wait.due(100.0 + etcd_waiting.GAP_CHECK) is Step.LOOK
    assert wait.looked_at(place) is Step.READ_ON
    assert wait.due(104.0) is Step.READ_ON
    assert wait.read_for == pytest.approx(1.0), "read until the wait's end, the gap's look made"
    assert wait.due(105.0) is Step.END


def test_a_wait_ends_at_its_deadline_and_pauses_only_when_its_stream_ended_at_once() -> None:
    wait = WatchedWait(_line(), _behind_the_holder())
    wait.start(100.0, 5.0, 102.0)
    assert wait.due(100.0) is Step.READ_ON
    assert wait.read_for == pytest.approx(2.0)
    assert wait.got(None) is Step.READ_ON
    assert wait.due(102.0) is Step.END
    assert not wait.spinning(102.0)
    ended = WatchedWait(_line(), _behind_the_holder())
    ended.start(100.0, 5.0, None)
    assert ended.got(ENDED) is Step.END
    assert ended.spinning(100.01)
    assert not ended.spinning(100.1)


def test_our_own_keys_delete_never_grants() -> None:
    line, place = _line(), _behind_the_holder()
    wait = WatchedWait(line, place)
    wait.read(_created(10))
    assert wait.read(_deleted(12, PREFIX + b"2a-0", PREFIX + b"1f-0")) is Step.END
    assert line.granted_by_event(place) is None
    line, place = _line(), _behind_the_holder()
    wait = WatchedWait(line, place)
    wait.read(_created(10))
    assert wait.read(_deleted(11, PREFIX + b"2a-0")) is Step.END
    assert line.granted_by_event(place) is None


def test_a_watcher_created_after_a_write_grants_only_after_the_look_that_covers_the_gap() -> None:
    line, place = _line(), _behind_the_holder(seen=10)
    wait = WatchedWait(line, place)
    assert not wait.covered()
    assert wait.read(_created(12)) is Step.LOOK  # written to since our read: our key may have gone
    assert not wait.covered()
    assert wait.looked_at(place) is Step.READ_ON  # our key and the holder, as before
    assert wait.covered()
    assert wait.read(_deleted(13, PREFIX + b"1f-0")) is Step.END
    assert line.granted_by_event(place) is not None
    # Without that look, the same DELETE only wakes the waiter to look.
    line = _line()
    wait = WatchedWait(line, place)
    wait.read(_created(12))
    assert wait.read(_deleted(13, PREFIX + b"1f-0")) is Step.END
    assert line.granted_by_event(place) is None


# -- against etcd ----------------------------------------------------------------------------------


def _recording_watches(backend: Any, monkeypatch: pytest.MonkeyPatch) -> list[etcdrpc.WatchCreateRequest]:
    """The create requests of every watch ``backend``'s waiters ask for."""
    asked: list[etcdrpc.WatchCreateRequest] = []
    real_watch = backend._conn.watch

    def watch(requests: Iterator[etcdrpc.WatchRequest], timeout: float | None = None) -> object:
        def recorded() -> Iterator[etcdrpc.WatchRequest]:
            for request in requests:
                if request.HasField("create_request"):
                    asked.append(request.create_request)
                yield request
        return real_watch(recorded(), timeout)

    monkeypatch.setattr(backend._conn, "watch", watch)
    return asked


def test_a_newer_key_deleted_between_the_two_names_neither_wakes_nor_costs_the_waiter(
        member: EtcdMember, connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key put between the holder's name and the waiter's (a newer contender's, here
    written out of band) is deleted while the waiter waits: the waiter neither looks
    nor watches again, and the holder's release then grants it with no request."""
    holder, waiter = connect(), connect()
    grant = acquire_watched(member, holder, "orders")
    asked = _recording_watches(waiter, monkeypatch)
    waiting = _wait_behind(member, waiter)
    [create] = asked
    between = bytes(create.key) + b"\0"  # after the lower name, before the higher one
    assert bytes(create.key) < between < bytes(create.range_end)
    before = _txns(member)
    holder._conn.call("KV", "Put", etcdrpc.PutRequest(key=between, value=b"x"))
    holder._conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=between))
    holder.release(grant)
    taken = waiting.result(PROMPT)
    assert _txns(member) == before, "the waiter looked: woken by another key, or not granted by the DELETE"
    assert len(asked) == 1, "the waiter watched again"
    assert waiter.describe("orders").holder == waiter.identity
    waiter.release(taken)


def test_a_waiter_behind_the_holder_whose_watch_came_after_a_write_looks_once_then_is_granted_by_the_event(
        member: EtcdMember, connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """The revision moved between the waiter's read and its watcher's creation: its key
    could have gone in that gap unreported, so it looks once the watcher exists (one
    Txn); that look covers the gap, and the holder's DELETE then grants it with no
    further request."""
    monkeypatch.setattr(etcd_waiting, "GAP_CHECK", PROMPT)
    holder, waiter = connect(), connect()
    grant = acquire_watched(member, holder, "orders")
    before = _txns(member)
    answered: list[object] = []
    looked = threading.Event()  # its enqueue and the gap's look answered
    real_txn = waiter._conn.txn

    def txn(request: etcdrpc.TxnRequest, **kwargs: object) -> object:
        answered.append(real_txn(request, **kwargs))
        if len(answered) == 2:
            looked.set()
        return answered[-1]

    monkeypatch.setattr(waiter._conn, "txn", txn)
    put = etcdrpc.PutRequest(key=b"/unrelated/gap", value=b"x")
    _written_to_before_watching(waiter, monkeypatch, lambda: holder._conn.call("KV", "Put", put))
    waiting = _wait_behind(member, waiter)
    assert looked.wait(PROMPT), "the waiter did not look once its watcher existed"
    holder.release(grant)
    taken = waiting.result(PROMPT)
    assert len(answered) == 2, "the waiter looked again after the holder's DELETE"
    assert _txns(member) == before + 2
    waiter.release(taken)
