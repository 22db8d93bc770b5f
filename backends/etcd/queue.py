"""The fair queue of one lock or election in etcd: the etcd driver of
:func:`fencing_coord.fairqueue.wait_in_line`.

Every contender puts its own key ``<prefix><lease-hex>-<slot>`` bound to its backend's
lease and never re-puts it; the key with the lowest create revision is first. Each
contender watches only the key just before its own (its predecessor). The round trips:
``enqueue`` is one transaction (put our key, read the queue's two newest keys: the
second newest is our predecessor), or with ``exclusive`` one transaction that puts only
if the queue is empty; ``look`` is one transaction (our key, our predecessor); ``wait``
holds one watch stream on two keys; ``withdraw`` is one delete.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import grpc
from etcd3 import etcdrpc

from fencing_coord.errors import BackendUnavailable, InvalidArgument
from fencing_coord.fairqueue import EntryGone
from fencing_coord.frontend import FrontEnd
from fencing_coord.grant import Grant

from .session import Lease, Session
from .wire import KV, LeaseNotFound, compare, prefix_end, put, range_kvs, range_op, range_request, status_code, txn

__all__ = ["EtcdGrant", "EtcdQueue", "Place", "Queues", "look_result", "watch_requests"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Place:
    """A contender's place in a queue: its key, that key's create revision (the token),
    the lease the key is bound to and the key name's slot; and what it last saw: the key
    of its predecessor (None: first) and the revision it read at."""

    key: bytes
    revision: int
    lease: Lease
    slot: int
    predecessor: bytes | None = None
    seen: int = 0

    @property
    def first(self) -> bool:
        return self.predecessor is None

    @property
    def prefix(self) -> bytes:
        """The prefix of the queue this place is in."""
        return self.key[: self.key.rindex(b"/") + 1]


class EtcdGrant(Grant):
    """A grant of the etcd backend: the place (key, create revision, lease) it holds."""

    __slots__ = ("place",)

    def __init__(self, name: str, token: int, holder: str, *, owner: FrontEnd,
                 probe: Callable[[Grant], None], place: Place) -> None:
        super().__init__(name, token, holder, owner=owner, probe=probe)
        self.place = place


def look_result(response: Any, place: Place) -> tuple[bytes | None, int, bool]:
    """(our predecessor's key or None, the revision read at, whether our key still
    exists), from the answer to :meth:`EtcdQueue.look_request`."""
    mine = [kv for kv in range_kvs(response.responses[0]) if kv.create_revision == place.revision]
    before = range_kvs(response.responses[1])
    return (before[0].key if before else None), int(response.header.revision), bool(mine)


def watch_requests(place: Place) -> list[Any]:
    """The watches a waiter holds: deletions of its predecessor's key and of its own.

    From "now", not from ``seen + 1``: etcd serves a watch that starts in the past from
    a catch-up loop that runs every 100 ms, which under contention would add tens of
    milliseconds to every handoff. What was deleted between ``seen`` and the watches'
    creation is caught by looking again once both are confirmed."""
    return [etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
        key=key, filters=[etcdrpc.WatchCreateRequest.NOPUT])) for key in (place.predecessor, place.key)]


class Queues:
    """What the queues of one backend share: the session whose lease their keys are bound
    to, the backend that grants come from, and each queue's requests (which never change)."""

    def __init__(self, session: Session, owner: FrontEnd, probe: Callable[[Grant], None], *,
                 recheck_interval: float) -> None:
        self.session = session
        self.conn = session.conn
        self.owner = owner
        self.probe = probe
        #: A silent wait is re-checked at least this often (see EtcdQueue.wait).
        self.recheck_interval = recheck_interval
        self._newest_two: dict[bytes, Any] = {}

    def line(self, prefix: bytes, name: str, value: bytes) -> EtcdQueue:
        """The driver for one wait in the queue under ``prefix``, whose keys hold ``value``."""
        newest_two = self._newest_two.get(prefix)
        if newest_two is None:
            if len(self._newest_two) >= 1024:
                self._newest_two.clear()
            newest_two = self._newest_two[prefix] = range_op(
                range_request(prefix, prefix_end(prefix), limit=2, newest_first=True, by_create=True))
        return EtcdQueue(self, prefix, newest_two, name, value)

    def withdraw(self, place: Place, budget: float | None = None) -> bool:
        """Delete ``place``'s key; True if it still existed. (A plain delete is exact:
        nobody else puts our key's name, and we reuse it only after this delete.) If etcd
        cannot be reached within ``budget``, the key is deleted later in the background
        and BackendUnavailable is raised."""
        try:
            response = self.conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=place.key), budget=budget)
        except BackendUnavailable:
            self.session.delete_later(place.key)
            raise
        self.session.free_slot(place.lease, place.slot)
        return int(response.deleted) > 0

    def members(self, prefix: bytes) -> list[KV]:
        """Every contender under ``prefix``, first (the holder) first."""
        return self.conn.range(range_request(prefix, prefix_end(prefix), by_create=True))


class EtcdQueue:
    """The :class:`~fencing_coord.fairqueue.QueueDriver` of one wait in one queue (see
    the module docstring for its requests). A contender whose lease dies while it waits
    disposes of its key and reports :class:`EntryGone`: the algorithm enqueues again
    with the session's next lease."""

    def __init__(self, queues: Queues, prefix: bytes, newest_two: Any, name: str, value: bytes) -> None:
        self.queues = queues
        self.prefix = prefix
        self.end = prefix_end(prefix)
        self.newest_two = newest_two
        self.name = name
        self.value = value
        #: etcd failed a request of this wait: a withdraw then gets one short try before
        #: the background takes over, rather than a whole further timeout.
        self._failing = False

    # -- the QueueDriver -------------------------------------------------------------------

    def enqueue(self, exclusive: bool) -> Place | None:
        self._check_open()
        session = self.queues.session
        lease = session.lease()
        key, slot = self.new_key(lease)
        asked = time.monotonic()
        try:
            place = self._put_if_empty(key, lease, slot) if exclusive else self._put_last(key, lease, slot)
        except LeaseNotFound as exc:
            session.vanished(lease, asked)  # before our keepalive told us: start over
            raise EntryGone(key.decode()) from exc
        except BaseException:
            # Our key may exist (a put whose answer was lost): it must not stay queued
            # while our lease lives on, or it would block the lock once first. Delete it
            # now if etcd answers, else in the background. Its slot is not reused.
            try:
                self.queues.conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=key), budget=1.0)
            except Exception:
                session.delete_later(key)
            raise
        if place is None and not exclusive:
            raise EntryGone(key.decode())  # deleted before we could read it
        if place is not None:
            self._check_lease(place)
        return place

    def look(self, place: Place) -> Place:
        self._check_open()
        predecessor, seen, present = self._look(place)
        if not present:
            self.queues.session.free_slot(place.lease, place.slot)
            raise EntryGone(place.key.decode())
        self._check_lease(place)
        return replace(place, predecessor=predecessor, seen=seen)

    def wait(self, place: Place, deadline: float | None) -> None:
        """Block until the predecessor or our own key may have been deleted since
        ``place.seen``, our lease is lost, the session closes, or the deadline (or a
        periodic re-check) comes."""
        if place.predecessor is None:
            return
        queues = self.queues
        requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for request in watch_requests(place):
            requests.put(request)

        def stream() -> Iterator[Any]:
            while (request := requests.get()) is not None:
                yield request

        try:
            index, call = queues.conn.watch(stream())
        except BackendUnavailable:
            time.sleep(0.05)
            return
        # Re-check now and then even without an event: a member cut off from the others
        # in a way etcd does not detect could leave the stream silent.
        wait = queues.recheck_interval
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        timer = threading.Timer(wait, call.cancel)
        timer.daemon = True
        started = time.monotonic()
        created, since = 0, 0
        # Everything after the call exists runs under the finally that ends it: a signal
        # handler that raises (run's SIGTERM) may interrupt even timer.start().
        try:
            if not queues.session.add_waker(place.lease, call.cancel):
                call.cancel()
            timer.start()
            for response in call:
                if response.canceled or response.compact_revision or response.events:
                    break
                if response.created:
                    created += 1
                    since = max(since, int(response.header.revision))
                    if created == 2 and since > place.seen:
                        # Written to since we looked: both watches are in place now,
                        # so one more look cannot miss a deletion.
                        before, _, present = self._look(place)
                        if not present or before != place.predecessor:
                            break
        except grpc.RpcError as exc:
            if status_code(exc) != grpc.StatusCode.CANCELLED:
                queues.conn.note_failure(index, exc)
                if time.monotonic() - started < 0.05:
                    time.sleep(0.05)  # a member that refuses at once: do not spin
        finally:
            timer.cancel()
            queues.session.remove_waker(place.lease, call.cancel)
            requests.put(None)
            call.cancel()

    def withdraw(self, place: Place) -> bool:
        return self.queues.withdraw(place, budget=1.0 if self._failing else None)

    def claim(self, place: Place) -> EtcdGrant:
        """Bind a grant to ``place``'s lease, so that it is marked lost with it."""
        queues = self.queues
        grant = EtcdGrant(self.name, place.revision, queues.owner.identity, owner=queues.owner,
                          probe=queues.probe, place=place)
        if queues.session.bind(place.lease, grant):
            return grant
        # The lease died between our becoming first and now: that is not a grant.
        self._dispose(place)
        raise EntryGone(place.key.decode())

    # -- requests ----------------------------------------------------------------------------

    def _put_last(self, key: bytes, lease: Lease, slot: int) -> Place | None:
        """Put our key; return our place (with our predecessor), or None if the key
        vanished already."""
        found = self.put_last_result(self.queues.conn.txn(self.put_last_request(key, lease)), key, lease, slot)
        if isinstance(found, Place) and not found.first and found.seen == 0:
            predecessor, seen, present = self._look(found)
            found = replace(found, predecessor=predecessor, seen=seen) if present else None
        if found is None:
            self.queues.session.free_slot(lease, slot)
        return found

    def _put_if_empty(self, key: bytes, lease: Lease, slot: int) -> Place | None:
        """Put our key only if nobody holds or waits: one transaction, nothing to undo."""
        response = self.queues.conn.txn(self.put_if_empty_request(key, lease))
        found = self.put_if_empty_result(response, key, lease, slot)
        if found is None:
            self.queues.session.free_slot(lease, slot)
        return found

    def _look(self, place: Place) -> tuple[bytes | None, int, bool]:
        """(our predecessor's key or None, the revision read at, whether our key still
        exists)."""
        try:
            response = self.queues.conn.txn(self.look_request(place))
        except BackendUnavailable:
            self._failing = True
            raise
        return look_result(response, place)

    # -- the requests and what their answers mean (shared with the asyncio driver) ---------

    def put_last_request(self, key: bytes, lease: Lease) -> Any:
        return txn(
            [compare(key, "create", "==", 0)],
            [put(key, self.value, lease.id), self.newest_two],
            # A retry of a put that was applied after all: find our key instead. (Only
            # this request can have made it: a slot is reused only once its key is gone.)
            [range_op(range_request(key))],
        )

    @staticmethod
    def put_last_result(response: Any, key: bytes, lease: Lease, slot: int) -> Place | None:
        """Our place from the answer to :meth:`put_last_request`: with its predecessor;
        or, when an earlier attempt had put the key, a place still to look at (``seen``
        0 and not first); None when the key is gone already."""
        if response.succeeded:
            newest = response.responses[1].response_range.kvs
            revision = int(response.header.revision)
            return Place(key, revision, lease, slot, bytes(newest[1].key) if len(newest) > 1 else None, revision)
        mine = range_kvs(response.responses[0])
        if mine:
            return Place(key, mine[0].create_revision, lease, slot, predecessor=b"?")
        return None

    def put_if_empty_request(self, key: bytes, lease: Lease) -> Any:
        return txn(
            [compare(self.prefix, "version", "==", 0, range_end=self.end)],
            [put(key, self.value, lease.id)],
            [range_op(range_request(key))],
        )

    @staticmethod
    def put_if_empty_result(response: Any, key: bytes, lease: Lease, slot: int) -> Place | None:
        if response.succeeded:
            return Place(key, int(response.header.revision), lease, slot)
        mine = range_kvs(response.responses[0])
        if mine:
            # An earlier attempt of this request was applied after all, when the queue
            # was empty: our key is first.
            return Place(key, mine[0].create_revision, lease, slot)
        return None

    def look_request(self, place: Place) -> Any:
        return txn(success=[
            range_op(range_request(place.key)),
            range_op(range_request(self.prefix, self.end, limit=1, newest_first=True, by_create=True,
                                   max_create_revision=max(1, place.revision - 1))),
        ])

    def new_key(self, lease: Lease) -> tuple[bytes, int]:
        """A key name for our entry under ``lease``, and its slot."""
        slot = self.queues.session.take_slot(lease)
        return self.prefix + f"{lease.id:x}-{slot}".encode(), slot

    def _check_lease(self, place: Place) -> None:
        """EntryGone (after disposing of our key) if our lease has died meanwhile."""
        if self.queues.session.check(place.lease) is not None:
            self._dispose(place)
            raise EntryGone(place.key.decode())

    def _dispose(self, place: Place) -> None:
        """Withdraw a key whose lease died: it is on its way out with the lease; do not
        leave it queued in the meantime (in the background if etcd does not answer)."""
        with contextlib.suppress(BackendUnavailable):
            self.withdraw(place)

    def _check_open(self) -> None:
        if self.queues.owner.closed:
            raise InvalidArgument(f"{self.queues.owner!r} is closed")
