"""A waiter further back than next in line: its listing after the predecessor's deletion
goes out from the watch, at the event (see
:mod:`fencing_coord.backends.zookeeper.listing_at_event`), on both front ends, and is the
only listing it sends; on the asyncio front end the ``exists`` that sets the watch costs
the loop no pass unless the predecessor is gone already."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from kazoo.exceptions import BadArgumentsError, ConnectionLoss
from kazoo.handlers.threading import AsyncResult, SequentialThreadingHandler

import fencing_coord as fc
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.backends.zookeeper.aio_queue import AsyncZooKeeperQueue
from fencing_coord.backends.zookeeper.backend import ZooKeeperBackend
from fencing_coord.backends.zookeeper.listing_at_event import ListingAtEvent
from fencing_coord.backends.zookeeper.names import LOCK_KIND
from fencing_coord.backends.zookeeper.queue import ZooKeeperPlace
from fencing_coord.testing.aio_fixtures import run_guarded

from .conftest import ZooKeeperTarget
from .test_aio_handoff import _queued_behind, _until_watched, hand_down, trio
from .test_backend import _eventually, _ordered_children, _Requests, _watched_by
from .test_backend import _queued_behind as _queued_behind_sync

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0


class _Reads:
    """The ``get_children_async`` and ``exists_async`` calls on one backend's kazoo client:
    the thread of each listing, and every result made (by request name)."""

    def __init__(self, backend: ZooKeeperBackend | AsyncZooKeeperBackend) -> None:
        self.threads: list[threading.Thread] = []
        self.results: list[tuple[str, Any]] = []
        client = backend.kazoo_client
        listing, exists = client.get_children_async, client.exists_async

        def listed(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread())
            result = listing(*args, **kwargs)
            self.results.append(("listing", result))
            return result

        def existed(*args: Any, **kwargs: Any) -> Any:
            result = exists(*args, **kwargs)
            self.results.append(("exists", result))
            return result

        client.get_children_async = listed
        client.exists_async = existed


class _Event:
    def __init__(self, kind: str) -> None:
        self.type = kind


DELETED, NONE = _Event("DELETED"), _Event("NONE")


def test_async_a_waiter_further_back_is_woken_by_the_listing_sent_at_the_event(local: ZooKeeperTarget,
                                                                              operator: Any) -> None:
    """The last of three contenders watches the second. When the second releases, the
    last's listing is sent by kazoo's connection thread as it reads the deletion event
    (before: by the waiting task, once the loop had run it), and that answer wakes the
    task, which sends nothing more. Neither that listing's answer nor the exists' is
    handed to the loop as an awaited answer (before, both were)."""

    async def main() -> None:
        async with trio(local) as (holder, next_, last):
            grant = await holder.acquire("orders", timeout=PROMPT)
            parent = holder.lock_path("orders")
            first_task = await _queued_behind(next_, "orders")
            sent, reads = _Requests(last), _Reads(last)
            handed: list[Any] = []
            hand_over = last._requests._handed_over

            def handing(future: Any, result: Any, *rest: Any) -> None:
                handed.append(result)
                hand_over(future, result, *rest)

            last._requests._handed_over = handing
            second_task = await _queued_behind(last, "orders")
            _, nexts_node, _ = (f"{parent}/{c}" for c in await asyncio.to_thread(_ordered_children, operator,
                                                                                   parent))
            await _until_watched(local, last, nexts_node)
            taken, last_taken = await hand_down(holder, next_, grant, first_task, second_task)
            # (The monitor may add an Exists on the new grant's node 50 ms after the grant.)
            assert sent.since(0)[:4] == ["Create2", "GetChildren2", "Exists", "GetChildren2"]
            assert "GetChildren2" not in sent.since(4)
            loop_thread = threading.current_thread()
            assert [t is loop_thread for t in reads.threads[:2]] == [True, False], \
                "the listing after the event was not sent from kazoo's thread"
            waited = [result for kind, result in reads.results[1:3]]
            assert [kind for kind, _ in reads.results[1:3]] == ["exists", "listing"]
            assert not [r for r in handed if any(r is w for w in waited)], \
                "the exists' or the event listing's answer was handed to the loop as an awaited answer"
            assert last_taken.token > taken.token > grant.token
            assert await last.release(last_taken) is True

    run_guarded(main)


def test_a_blocking_waiter_further_back_gets_its_listing_sent_at_the_event(make: Any, local: ZooKeeperTarget,
                                                                          operator: Any) -> None:
    """The same on the blocking front end: the listing after the event is sent by the
    watch (kazoo's callback thread there), not by the waiting thread, and is the only one."""
    holder, next_, last = make(), make(), make()
    grant = holder.acquire("orders", timeout=PROMPT)
    parent = holder.lock_path("orders")
    first_thread, first = _queued_behind_sync(next_, "orders")
    sent, reads = _Requests(last), _Reads(last)
    second_thread, second = _queued_behind_sync(last, "orders")
    nexts_node = f"{parent}/{_ordered_children(operator, parent)[1]}"
    _eventually(lambda: _watched_by(local, last.session_id, nexts_node))
    assert holder.release(grant) is True
    first_thread.join(PROMPT)
    assert next_.release(first[0]) is True
    second_thread.join(PROMPT)
    assert sent.since(0)[:4] == ["Create2", "GetChildren2", "Exists", "GetChildren2"]
    assert "GetChildren2" not in sent.since(4)
    assert reads.threads[0] is second_thread
    assert reads.threads[1] is not second_thread, "the waiting thread sent the listing after the event"
    assert second[0].token > first[0].token > grant.token
    assert last.release(second[0]) is True


@asynccontextmanager
async def _first_in_line(target: ZooKeeperTarget) -> AsyncIterator[tuple[AsyncZooKeeperBackend,
                                                                          AsyncZooKeeperQueue, ZooKeeperPlace]]:
    """A backend in a new namespace, one acquisition's queue driver and its place, first
    in the queue of "orders" (the caller withdraws it)."""
    backend = await fc.aio.connect(target.url, namespace=f"at-event-{uuid.uuid4().hex[:10]}", ttl=4)
    assert isinstance(backend, AsyncZooKeeperBackend)
    async with backend:
        line = backend._line(LOCK_KIND, "orders", backend.lock_path("orders"), b"me", None)
        place = await line.enqueue(True)
        assert place.first
        yield backend, line, place


def test_async_a_waiter_whose_predecessor_is_gone_before_its_exists_lists_at_once(
        zk_standalone: ZooKeeperTarget) -> None:
    """The exists is not awaited on its own, but an answer saying the predecessor is
    gone wakes the waiter at once (it then lists the queue): it never sleeps until its
    deadline on a watch that cannot fire."""

    async def main() -> None:
        async with _first_in_line(zk_standalone) as (_, line, place):
            gone = ZooKeeperPlace(place.entry, "_c_0000-lock-0000000000", place.parent_czxid, alone=False)
            started = time.monotonic()
            await line.wait(gone, time.monotonic() + 20)
            assert time.monotonic() - started < 10, "the waiter slept on a predecessor that was gone"
            assert (await line.look(place)).first
            assert await line.withdraw(place) is True

    run_guarded(main)


def test_async_an_exists_that_fails_for_good_raises_its_error(zk_standalone: ZooKeeperTarget) -> None:
    """The exists is not awaited on its own, but a failure that is not a lost connection
    is raised after the wait, mapped as every request's is (here kazoo's
    BadArgumentsError: InvalidArgument), instead of waking a waiter that lists the queue,
    sets the watch again, fails again."""

    async def main() -> None:
        async with _first_in_line(zk_standalone) as (backend, line, place):
            client = backend.kazoo_client
            real = client.exists_async

            def refused(*_args: Any, **_kwargs: Any) -> Any:  # the server's refusal, injected
                result = client.handler.async_result()
                result.set_exception(BadArgumentsError())
                return result

            client.exists_async = refused
            waiting = ZooKeeperPlace(place.entry, "_c_0000-lock-0000000000", place.parent_czxid, alone=False)
            try:
                with pytest.raises(fc.InvalidArgument, match="refused the arguments"):
                    await line.wait(waiting, time.monotonic() + 20)
            finally:
                client.exists_async = real
            assert await line.withdraw(place) is True

    run_guarded(main)


# -- the watch itself ----------------------------------------------------------------------


class _Woke:
    def __init__(self) -> None:
        self.count = 0

    def set(self) -> None:
        self.count += 1


def _listing_counted() -> tuple[list[AsyncResult], Any]:
    sent: list[AsyncResult] = []

    def listing() -> AsyncResult:
        sent.append(AsyncResult(SequentialThreadingHandler()))
        return sent[-1]

    return sent, listing


def test_the_watch_sends_one_listing_at_its_deletion_event_and_wakes() -> None:
    sent, listing = _listing_counted()
    woke = _Woke()
    watch = ListingAtEvent(lambda: 3, listing, woke)
    watch(DELETED)
    watch(DELETED)
    assert len(sent) == 1
    assert woke.count == 2  # kazoo's own results cannot notify: woken at once
    collect = watch.start()
    assert collect() is sent[0]  # the listing sent at the event, not a new one
    assert len(sent) == 1


def test_a_wait_without_the_event_lists_anew_and_a_later_event_sends_nothing() -> None:
    sent, listing = _listing_counted()
    woke = _Woke()
    watch = ListingAtEvent(lambda: 3, listing, woke)
    assert watch.start() is listing  # no event came: the waiter lists itself
    watch(DELETED)  # after the wait: it only wakes
    assert sent == []
    assert woke.count == 1
    disarmed = ListingAtEvent(lambda: 3, listing, _Woke())
    disarmed.disarm()  # a wait that ended on its deadline
    disarmed(DELETED)
    assert sent == []


def test_an_event_other_than_the_deletion_only_wakes() -> None:
    """kazoo fires every watch with a NONE event when the connection drops: no listing
    then (it would go out on the next connection and be thrown away)."""
    sent, listing = _listing_counted()
    woke = _Woke()
    watch = ListingAtEvent(lambda: 3, listing, woke)
    watch(NONE)
    assert sent == []
    assert woke.count == 1
    assert watch.start() is listing


def test_a_listing_sent_at_the_event_on_an_earlier_connection_is_sent_again() -> None:
    sent, listing = _listing_counted()
    epoch = [3]
    watch = ListingAtEvent(lambda: epoch[0], listing, _Woke())
    watch(DELETED)
    epoch[0] = 4
    collect = watch.start()
    again = collect()
    assert len(sent) == 2
    assert again is sent[1]


def test_a_listing_that_cannot_be_sent_wakes_the_waiter_and_never_raises() -> None:
    woke = _Woke()

    def failing() -> Any:
        raise ConnectionLoss()

    watch = ListingAtEvent(lambda: 1, failing, woke)
    watch(DELETED)  # on kazoo's thread: must not raise
    assert woke.count == 1
    assert watch.start() is failing  # the waiter lists itself
