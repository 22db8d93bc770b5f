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
from typing import Any

import pytest
from kazoo.exceptions import ConnectionLoss
from kazoo.handlers.threading import AsyncResult, SequentialThreadingHandler

import fencing_coord as fc
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.backends.zookeeper.backend import ZooKeeperBackend
from fencing_coord.backends.zookeeper.listing_at_event import ListingAtEvent
from fencing_coord.backends.zookeeper.names import LOCK_KIND
from fencing_coord.backends.zookeeper.queue import ZooKeeperPlace
from fencing_coord.testing.aio_fixtures import run_guarded

from ..spies import recorded
from .conftest import ZooKeeperTarget
from .test_aio_handoff import _queued_behind, _until_watched
from .test_backend import _eventually, _ordered_children, _Requests, _watched_by
from .test_backend import _queued_behind as _queued_behind_sync

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0


@pytest.fixture
def local(zk_standalone: ZooKeeperTarget) -> ZooKeeperTarget:
    if zk_standalone.ensemble is None:
        pytest.skip("needs the server's four-letter words (local server)")
    return zk_standalone


class _ListingThreads:
    """The threads that call ``get_children_async`` on one backend's kazoo client."""

    def __init__(self, backend: ZooKeeperBackend | AsyncZooKeeperBackend) -> None:
        self.threads: list[threading.Thread] = []
        client = backend.kazoo_client
        real = client.get_children_async

        def listing(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread())
            return real(*args, **kwargs)

        client.get_children_async = listing


def test_async_a_waiter_further_back_is_woken_by_the_listing_sent_at_the_event(local: ZooKeeperTarget,
                                                                              operator: Any) -> None:
    """The last of three contenders watches the second. When the second releases, the
    last's listing is sent by kazoo's connection thread as it reads the deletion event
    (before: by the waiting task, once the loop had run it), and that answer wakes the
    task, which sends nothing more. Its whole acquire takes one answer handed to the loop
    (the create's and the listing behind it); before, three (the exists, and the
    listing, too)."""

    async def main() -> None:
        namespace = f"at-event-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(local.url, namespace=namespace, ttl=4) as holder, \
                await fc.aio.connect(local.url, namespace=namespace, ttl=4) as next_, \
                await fc.aio.connect(local.url, namespace=namespace, ttl=4) as last:
            assert isinstance(holder, AsyncZooKeeperBackend)
            assert isinstance(next_, AsyncZooKeeperBackend)
            assert isinstance(last, AsyncZooKeeperBackend)
            grant = await holder.acquire("orders", timeout=PROMPT)
            parent = holder.lock_path("orders")
            first_task = await _queued_behind(next_, "orders")
            sent, listings = _Requests(last), _ListingThreads(last)
            with recorded(last._requests, "_handed_over") as answers:
                second_task = await _queued_behind(last, "orders")
                _, nexts_node, _ = (f"{parent}/{c}" for c in await asyncio.to_thread(_ordered_children, operator,
                                                                                       parent))
                await _until_watched(local, last, nexts_node)
                assert await holder.release(grant) is True
                async with asyncio.timeout(PROMPT):
                    taken = await first_task
                assert await next_.release(taken) is True
                async with asyncio.timeout(PROMPT):
                    last_taken = await second_task
            assert sent.since(0) == ["Create2", "GetChildren2", "Exists", "GetChildren2"]
            loop_thread = threading.current_thread()
            assert [t is loop_thread for t in listings.threads] == [True, False], \
                "the listing after the event was not sent from kazoo's thread"
            assert len(answers) == 1, f"{len(answers)} answers handed to the loop for one acquire"
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
    sent, listings = _Requests(last), _ListingThreads(last)
    second_thread, second = _queued_behind_sync(last, "orders")
    nexts_node = f"{parent}/{_ordered_children(operator, parent)[1]}"
    _eventually(lambda: _watched_by(local, last.session_id, nexts_node))
    assert holder.release(grant) is True
    first_thread.join(PROMPT)
    assert next_.release(first[0]) is True
    second_thread.join(PROMPT)
    assert sent.since(0) == ["Create2", "GetChildren2", "Exists", "GetChildren2"]
    assert listings.threads[0] is second_thread
    assert listings.threads[1] is not second_thread, "the waiting thread sent the listing after the event"
    assert second[0].token > first[0].token > grant.token
    assert last.release(second[0]) is True


def test_async_a_waiter_whose_predecessor_is_gone_before_its_exists_lists_at_once(
        zk_standalone: ZooKeeperTarget) -> None:
    """The exists is not awaited on its own, but an answer saying the predecessor is
    gone wakes the waiter at once (it then lists the queue): it never sleeps until its
    deadline on a watch that cannot fire."""

    async def main() -> None:
        backend = await fc.aio.connect(zk_standalone.url, namespace=f"at-event-{uuid.uuid4().hex[:10]}", ttl=4)
        assert isinstance(backend, AsyncZooKeeperBackend)
        async with backend:
            line = backend._line(LOCK_KIND, "orders", backend.lock_path("orders"), b"me", None)
            place = await line.enqueue(True)
            assert place.first
            gone = ZooKeeperPlace(place.entry, "_c_0000-lock-0000000000", place.parent_czxid, alone=False)
            started = time.monotonic()
            await line.wait(gone, time.monotonic() + 20)
            assert time.monotonic() - started < 10, "the waiter slept on a predecessor that was gone"
            assert (await line.look(place)).first
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


def test_the_watch_sends_one_listing_at_its_first_event_and_wakes() -> None:
    sent, listing = _listing_counted()
    woke = _Woke()
    watch = ListingAtEvent(lambda: 3, listing, woke)
    assert watch.start() is listing  # no event yet: the waiter lists itself
    watch(None)
    watch(None)
    assert len(sent) == 1
    assert woke.count == 1  # kazoo's own results cannot notify: woken at once
    collect = watch.start()
    assert collect() is sent[0]  # the listing sent at the event, not a new one
    assert len(sent) == 1


def test_a_listing_sent_at_the_event_on_an_earlier_connection_is_sent_again() -> None:
    sent, listing = _listing_counted()
    epoch = [3]
    watch = ListingAtEvent(lambda: epoch[0], listing, _Woke())
    watch(None)
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
    watch(None)  # on kazoo's thread: must not raise
    assert woke.count == 1
    assert watch.start() is failing  # the waiter lists itself
