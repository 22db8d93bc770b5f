"""Joining a queue in one round trip: the listing goes out right behind the create (see
:mod:`fencing_coord.backends.zookeeper.behind`), on both front ends, and both wake
kazoo's connection thread once (:mod:`~fencing_coord.backends.zookeeper.wakes`); the
asyncio one hears both answers in one hop from kazoo's thread. And the listing behind is
used only when it may stand for a fresh one."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from kazoo.exceptions import ConnectionLoss, NoNodeError
from kazoo.handlers.threading import AsyncResult, SequentialThreadingHandler

import fencing_coord as fc
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.backends.zookeeper.backend import ZooKeeperBackend
from fencing_coord.backends.zookeeper.behind import ListingBehind
from fencing_coord.backends.zookeeper.grant import Entry
from fencing_coord.backends.zookeeper.wakes import WakeSocket
from fencing_coord.testing.aio_fixtures import run_guarded

from ..spies import recorded
from .conftest import ZooKeeperTarget
from .test_backend import _Requests

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0
ROUNDS = 10


class _RoundTrips:
    """Round trips of one backend's kazoo client: requests queued while none of its
    requests was queued or awaiting its answer (pings and watch events are neither)."""

    def __init__(self, backend: ZooKeeperBackend | AsyncZooKeeperBackend) -> None:
        self.count = 0
        client = backend.kazoo_client
        call = client._call

        def queued(request: Any, async_object: Any) -> Any:
            self.count += not client._queue and not client._pending
            return call(request, async_object)

        client._call = queued


class _WakeSends:
    """The sends on kazoo's wake-up socket (one wakes its connection thread for one or
    more requests queued; see .wakes)."""

    def __init__(self, backend: ZooKeeperBackend | AsyncZooKeeperBackend) -> None:
        self.count = 0
        wake = backend.kazoo_client._connection._write_sock
        assert isinstance(wake, WakeSocket)
        sock = wake.socket
        outer = self

        class Counted:
            def send(self, data: bytes) -> int:
                outer.count += 1
                sent: int = sock.send(data)
                return sent

            def __getattr__(self, name: str) -> Any:
                return getattr(sock, name)

        wake.socket = Counted()


def test_an_uncontended_acquire_and_release_take_two_round_trips(make: Any) -> None:
    """Create2 and GetChildren2 together, then Delete; the caller waits for two answers
    (the listing behind the create is answered with it). Before: three round trips, the
    listing sent only once the create was answered."""
    backend = make()
    backend.release(backend.acquire("orders", timeout=PROMPT))  # the parent is made
    sent, trips, wakes = _Requests(backend), _RoundTrips(backend), _WakeSends(backend)
    with recorded(backend._session, "request") as awaited:
        for _ in range(ROUNDS):
            assert backend.release(backend.acquire("orders", timeout=PROMPT)) is True
    assert sent.since(0) == ["Create2", "GetChildren2", "Delete"] * ROUNDS
    assert awaited == [f"join the queue of {backend.lock_path('orders')}", "release 'orders'"] * ROUNDS
    assert trips.count <= 2 * ROUNDS, f"{trips.count} round trips for {ROUNDS} acquire+release"
    assert wakes.count <= 2 * ROUNDS, f"kazoo's thread woken {wakes.count} times for {ROUNDS} acquire+release"


def test_async_an_uncontended_acquire_and_release_take_two_round_trips_and_two_hops(
        zk_standalone: ZooKeeperTarget) -> None:
    """The same on the asyncio front end, where each answer awaited costs a hop from
    kazoo's connection thread to the loop (``call_soon_threadsafe``): two, not three."""

    async def main() -> None:
        backend = await fc.aio.connect(zk_standalone.url, namespace=f"lb-{uuid.uuid4().hex[:10]}", ttl=4)
        assert isinstance(backend, AsyncZooKeeperBackend)
        async with backend:
            await backend.release(await backend.acquire("orders", timeout=PROMPT))
            sent, trips, wakes = _Requests(backend), _RoundTrips(backend), _WakeSends(backend)
            with recorded(backend._requests, "request") as awaited, \
                    recorded(asyncio.get_running_loop(), "call_soon_threadsafe") as hops:
                for _ in range(ROUNDS):
                    assert await backend.release(await backend.acquire("orders", timeout=PROMPT)) is True
            assert sent.since(0) == ["Create2", "GetChildren2", "Delete"] * ROUNDS
            assert awaited == [f"join the queue of {backend.lock_path('orders')}", "release 'orders'"] * ROUNDS
            # An answer there before it is awaited costs no hop at all.
            assert len(hops) <= 2 * ROUNDS, f"{len(hops)} hops to the loop for {ROUNDS} acquire+release"
            assert trips.count <= 2 * ROUNDS, f"{trips.count} round trips for {ROUNDS} acquire+release"
            assert wakes.count <= 2 * ROUNDS, f"kazoo's thread woken {wakes.count} times for {ROUNDS} acquire+release"

    run_guarded(main)


# -- when the listing behind may stand for a fresh one ----------------------------------------

_ENTRY = Entry("/q", "_c_abc-lock-0000000007", 7, 0x10, 0x99)


def _answered(value: Any = None, error: BaseException | None = None) -> Any:
    result = AsyncResult(SequentialThreadingHandler())
    if error is not None:
        result.set_exception(error)
    elif value is not None:
        result.set(value)
    return result


class _Stat:
    czxid, version, cversion, dataLength, ephemeralOwner = 1, 0, 9, 0, 0


def test_a_listing_behind_that_lists_our_node_on_the_same_connection_is_used() -> None:
    listing = ListingBehind(3, _answered((["_c_x-lock-0000000005", _ENTRY.node], _Stat())))
    taken = listing.take(_ENTRY, 3)
    assert taken is not None
    children, stat = taken
    assert children == ["_c_x-lock-0000000005", _ENTRY.node]
    assert stat.cversion == 9


@pytest.mark.parametrize(("listing", "epoch"), [
    # Taken before our create was applied (a create sent again after its parent's): it
    # proves nothing about our node, which only a fresh listing may find gone.
    (ListingBehind(3, _answered((["_c_x-lock-0000000005"], _Stat()))), 3),
    (ListingBehind(3, _answered(error=NoNodeError())), 3),  # the parent was not there yet
    (ListingBehind(3, _answered(error=ConnectionLoss())), 3),
    (ListingBehind(3, _answered()), 3),  # not answered yet
    (ListingBehind(2, _answered(([_ENTRY.node], _Stat()))), 3),  # sent on an earlier connection
])
def test_any_other_listing_behind_is_not_used(listing: ListingBehind, epoch: int) -> None:
    assert listing.take(_ENTRY, epoch) is None

