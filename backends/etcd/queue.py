"""The fair queue of one lock or election in etcd: contenders' keys under a prefix, the
oldest first, each waiting on its predecessor's deletion only."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import grpc
from etcd3 import etcdrpc

from fencing_coord.errors import BackendUnavailable

from .session import Lease
from .wire import KV, LeaseNotFound, compare, prefix_end, put, range_kvs, range_op, range_request, status_code, txn

if TYPE_CHECKING:
    from .backend import EtcdBackend

__all__ = ["Place", "Queue"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Place:
    """A contender's place in a queue: its key, that key's create revision (the token),
    and the lease the key is bound to."""

    key: bytes
    revision: int
    lease: Lease
    slot: int

    @property
    def prefix(self) -> bytes:
        """The prefix of the queue this place is in."""
        return self.key[: self.key.rindex(b"/") + 1]


class Queue:
    """The contenders for one lock (or election) under ``prefix``: first = lowest create
    revision. Each contender waits on its predecessor's deletion only."""

    def __init__(self, backend: EtcdBackend, prefix: bytes) -> None:
        self.backend = backend
        self.prefix = prefix
        self.end = prefix_end(prefix)
        # Read in the enqueue transaction: our key is the newest, so the second newest
        # is our predecessor.
        self._newest_two = range_op(range_request(prefix, self.end, limit=2, newest_first=True, by_create=True))

    def join(self, value: bytes, deadline: float | None, on_queued: Callable[[], object] | None) -> Place | None:
        """Enqueue with ``value`` and wait until first; return the place, or None once
        ``deadline`` (time.monotonic) has passed, with the place withdrawn.

        If our key disappears while we wait (our lease expired or was revoked, or the
        key was deleted) we enqueue again, at the back, with the session's fresh lease,
        until the deadline: ``acquire`` keeps its promise to wait for the lock, not for
        one particular place in the queue. A deadline already past means "try once".
        """
        backend = self.backend
        session = backend._session
        notified = on_queued is None

        def queued() -> None:
            nonlocal notified
            if not notified and on_queued is not None:
                notified = True
                on_queued()

        while True:
            backend._check_open()
            lease = session.lease()
            slot = session.take_slot(lease)
            key = self.prefix + f"{lease.id:x}-{slot}".encode()
            asked = time.monotonic()
            try:
                if deadline is not None and asked >= deadline:
                    return self._try_once(key, value, lease, slot)
                place, predecessor, seen = self._enqueue(key, value, lease, slot)
                outcome = "gone" if place is None else self._wait_first(place, predecessor, seen, deadline, queued)
            except LeaseNotFound:
                session.vanished(lease, asked)  # before our keepalive told us: start over
                continue
            except BaseException:
                # Our key may exist (a put whose answer was lost, a wait cut short): it
                # must not stay queued while our lease lives on, or it would block the
                # lock once first. Delete it now if etcd answers, else in the background.
                # Its slot is not reused.
                try:
                    backend._conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=key), budget=1.0)
                except Exception:
                    session.delete_later(key)
                raise
            if outcome == "first":
                return place
            if outcome == "timeout" or (deadline is not None and time.monotonic() >= deadline):
                return None

    def _wait_first(self, place: Place, predecessor: KV | None, seen: int, deadline: float | None,
                    queued: Callable[[], None]) -> Literal["first", "gone", "timeout"]:
        """Wait until ``place`` is first ("first"), is gone or its lease died ("gone":
        enqueue again), or the deadline passed ("timeout", place withdrawn)."""
        session = self.backend._session
        present = True
        while predecessor is not None and present and session.check(place.lease) is None:
            if deadline is not None and time.monotonic() >= deadline:
                self.withdraw(place)
                return "timeout"
            queued()
            self._wait(place, predecessor.key, seen, deadline)
            self.backend._check_open()
            predecessor, seen, present = self._look(place.key, place.revision)
        if present and session.check(place.lease) is None:
            return "first"
        if present:
            # Our lease died while we waited: its key is on its way out; do not leave it
            # queued in the meantime.
            with contextlib.suppress(BackendUnavailable):
                self.withdraw(place)
        else:
            session.free_slot(place.lease, place.slot)
        return "gone"

    def _enqueue(self, key: bytes, value: bytes, lease: Lease,
                 slot: int) -> tuple[Place | None, KV | None, int]:
        """Put our key; return (our place, or None if the key vanished already; our
        predecessor or None; the revision read at)."""
        response = self.backend._conn.txn(txn(
            [compare(key, "create", "==", 0)],
            [put(key, value, lease.id), self._newest_two],
            # A retry of a put that was applied after all: find our key instead. (Only
            # this request can have made it: a slot is reused only once its key is gone.)
            [range_op(range_request(key))],
        ))
        if response.succeeded:
            newest = response.responses[1].response_range.kvs
            revision = int(response.header.revision)
            return Place(key, revision, lease, slot), (KV.of(newest[1]) if len(newest) > 1 else None), revision
        mine = range_kvs(response.responses[0])
        if mine:
            revision = mine[0].create_revision
            predecessor, seen, present = self._look(key, revision)
            if present:
                return Place(key, revision, lease, slot), predecessor, seen
        self.backend._session.free_slot(lease, slot)
        return None, None, 0

    def _try_once(self, key: bytes, value: bytes, lease: Lease, slot: int) -> Place | None:
        """Put our key only if nobody holds or waits: one transaction, nothing to undo."""
        response = self.backend._conn.txn(txn(
            [compare(self.prefix, "version", "==", 0, range_end=self.end)],
            [put(key, value, lease.id)],
            [range_op(range_request(key))],
        ))
        if response.succeeded:
            return Place(key, int(response.header.revision), lease, slot)
        mine = range_kvs(response.responses[0])
        if mine:
            # An earlier attempt of this request was applied after all, when the queue
            # was empty: our key is first.
            return Place(key, mine[0].create_revision, lease, slot)
        self.backend._session.free_slot(lease, slot)
        return None

    def _look(self, key: bytes, revision: int) -> tuple[KV | None, int, bool]:
        """(our predecessor or None, the revision read at, whether our key still exists)."""
        response = self.backend._conn.txn(txn(success=[
            range_op(range_request(key)),
            range_op(range_request(self.prefix, self.end, limit=1, newest_first=True, by_create=True,
                           max_create_revision=max(1, revision - 1))),
        ]))
        mine = [kv for kv in range_kvs(response.responses[0]) if kv.create_revision == revision]
        before = range_kvs(response.responses[1])
        return (before[0] if before else None), int(response.header.revision), bool(mine)

    def _wait(self, place: Place, predecessor: bytes, seen: int, deadline: float | None) -> None:
        """Block until the predecessor or our own key may have been deleted since
        revision ``seen``, our lease is lost, the session closes, or the deadline (or
        a periodic re-check) comes. The caller then looks again."""
        backend = self.backend
        session = backend._session
        requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Watch from "now", not from seen + 1: etcd serves a watch that starts in the
        # past from a catch-up loop that runs every 100 ms, which under contention
        # would add tens of milliseconds to every handoff. What was deleted between
        # ``seen`` and the watch's creation is caught by looking again (below).
        for key in (predecessor, place.key):
            requests.put(etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
                key=key, filters=[etcdrpc.WatchCreateRequest.NOPUT])))

        def stream() -> Iterator[Any]:
            while (request := requests.get()) is not None:
                yield request

        try:
            index, call = backend._conn.watch(stream())
        except BackendUnavailable:
            time.sleep(0.05)
            return
        # Re-check now and then even without an event: a member cut off from the others
        # in a way etcd does not detect could leave the stream silent.
        wait = backend._recheck_interval
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        timer = threading.Timer(wait, call.cancel)
        timer.daemon = True
        started = time.monotonic()
        if not session.add_waker(place.lease, call.cancel):
            call.cancel()
        timer.start()
        created, since = 0, 0
        try:
            for response in call:
                if response.canceled or response.compact_revision or response.events:
                    break
                if response.created:
                    created += 1
                    since = max(since, int(response.header.revision))
                    if created == 2 and since > seen:
                        # Written to since we looked: both watches are in place now,
                        # so one more look cannot miss a deletion.
                        before, _, present = self._look(place.key, place.revision)
                        if not present or before is None or before.key != predecessor:
                            break
        except grpc.RpcError as exc:
            if status_code(exc) != grpc.StatusCode.CANCELLED:
                backend._conn.note_failure(index, exc)
                if time.monotonic() - started < 0.05:
                    time.sleep(0.05)  # a member that refuses at once: do not spin
        finally:
            timer.cancel()
            session.remove_waker(place.lease, call.cancel)
            requests.put(None)
            call.cancel()

    def withdraw(self, place: Place) -> bool:
        """Delete our key; True if it still existed. (A plain delete is exact: nobody
        else puts our key's name, and we reuse it only after this delete.) If etcd
        cannot be reached, the key is deleted later in the background and
        BackendUnavailable is raised."""
        session = self.backend._session
        try:
            response = self.backend._conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=place.key))
        except BackendUnavailable:
            session.delete_later(place.key)
            raise
        session.free_slot(place.lease, place.slot)
        return int(response.deleted) > 0

    def members(self) -> list[KV]:
        """Every contender, first (the holder) first."""
        return self.backend._conn.range(range_request(self.prefix, self.end, by_create=True))
