"""The fair queue of one lock or election in etcd: the etcd driver of
:func:`fencing_coord.fairqueue.wait_in_line`.

Every contender puts its own key ``<prefix><lease-hex>-<slot>`` bound to its backend's
lease and never re-puts it; the key with the lowest create revision is first. Each
contender watches the key just before its own (its predecessor); behind the holder, its
own key too, on the same watcher (see :meth:`.places.LineRequests.watch_request`).
The requests and what their answers mean are in :mod:`.places`, how a waiter reads its
watch stream in :mod:`.waiting`: both shared with the asyncio driver.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from etcd3 import etcdrpc

from fencing_coord.deadlines import RequestBudget
from fencing_coord.errors import BackendUnavailable, InvalidArgument
from fencing_coord.fairqueue import EntryGone
from fencing_coord.frontend import FrontEnd
from fencing_coord.grant import Grant

from .places import EtcdGrant, LineRequests, Place, QueueReads
from .session import Lease, Session
from .waiting import Step, WatchedWait
from .waitstream import WaitStream
from .wire import KV, LeaseNotFound, prefix_end, range_request

__all__ = ["EtcdGrant", "EtcdQueue", "Place", "Queues"]

_log = logging.getLogger(__name__)


class Queues:
    """What the queues of one backend share: the session whose lease their keys are bound
    to, the backend that grants come from, and each queue's requests (which never change)."""

    def __init__(self, session: Session, owner: FrontEnd, probe: Callable[[Grant], None], *,
                 recheck_interval: float, waits: WaitStream | None) -> None:
        self.session = session
        self.conn = session.conn
        self.owner = owner
        self.probe = probe
        #: A silent wait is re-checked at least this often (see EtcdQueue.wait).
        self.recheck_interval = recheck_interval
        self._reads: dict[bytes, QueueReads] = {}
        #: The blocking backend's stream of the waits' watches (its owner closes it);
        #: None in the asyncio backend, whose waits use its own (.aio_waitstream).
        self.waits = waits

    def line(self, prefix: bytes, name: str, value: bytes, deadline: float | None) -> EtcdQueue:
        """The driver for one wait in the queue under ``prefix``, whose keys hold
        ``value``, until ``deadline`` (its requests end by then: :mod:`fencing_coord.deadlines`)."""
        budget = RequestBudget.until(deadline, self.conn.timeout)
        return EtcdQueue(self, prefix, self.reads(prefix), name, value, budget)

    def reads(self, prefix: bytes) -> QueueReads:
        """The unchanging reads of the queue under ``prefix`` (kept for 32 queues: each
        keeps ~2 KiB of protobuf arenas, outside Python's heap; 1,024 of them were most
        of the memory of a client holding 1,000 locks, issue 13: < 2 KiB per held lock)."""
        reads = self._reads.get(prefix)
        if reads is None:
            if len(self._reads) >= 32:
                self._reads.clear()
            reads = self._reads[prefix] = QueueReads(prefix)
        return reads

    def withdraw(self, place: Place, budget: float | None = None, *, idempotent: bool = True) -> bool:
        """Delete ``place``'s key; True if it still existed. (A plain delete is exact:
        nobody else puts our key's name, and we reuse it only after this delete.) If etcd
        cannot be reached within ``budget``, the key is deleted later in the background
        and BackendUnavailable is raised. Not ``idempotent``: the delete is not sent
        again once it may have been applied (BackendUnavailable instead), for callers
        that must tell "we deleted it" from "it was gone"."""
        try:
            response = self.conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=place.key), budget=budget,
                                      idempotent=idempotent)
        except BackendUnavailable:
            self.session.delete_later(place.key)
            raise
        self.session.free_slot(place.lease, place.slot)
        return int(response.deleted) > 0

    def members(self, prefix: bytes) -> list[KV]:
        """Every contender under ``prefix``, first (the holder) first."""
        return self.conn.range(range_request(prefix, prefix_end(prefix), by_create=True))


class EtcdQueue(LineRequests):
    """The :class:`~fencing_coord.fairqueue.QueueDriver` of one wait in one queue (see
    :mod:`.places` for its requests). A contender whose lease dies while it waits
    disposes of its key and reports :class:`EntryGone`: the algorithm enqueues again
    with the session's next lease."""

    def __init__(self, queues: Queues, prefix: bytes, reads: QueueReads, name: str, value: bytes,
                 budget: RequestBudget) -> None:
        super().__init__(prefix, reads, name, value, budget)
        self.queues = queues
        #: etcd failed a request of this wait: a withdraw then gets one short try before
        #: the background takes over, rather than a whole further timeout.
        self._failing = False

    # -- the QueueDriver -------------------------------------------------------------------

    def enqueue(self, exclusive: bool) -> Place | None:
        self._check_open()
        session = self.queues.session
        lease = session.lease(self.budget.request())
        slot = session.take_slot(lease)
        key = self.new_key(lease, slot)
        asked = time.monotonic()
        try:
            place = self._put_if_empty(key, lease, slot) if exclusive else self._put_last(key, lease, slot)
        except LeaseNotFound as exc:
            session.vanished(lease, asked)  # before our keepalive told us: start over
            raise EntryGone(key.decode()) from exc
        except BaseException as exc:
            # Our key may exist (a put whose answer was lost): it must not stay queued
            # while our lease lives on, or it would block the lock once first. Delete it
            # now if etcd answers, else in the background. Its slot is not reused.
            if isinstance(exc, BackendUnavailable):
                session.delete_later(key)  # etcd is not answering: do not wait for it again
                raise
            try:
                self.queues.conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=key),
                                      budget=self.budget.withdrawal())
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
        found = self.granted_by_event(place) or self._look(place, fresh_from=self.woken_at(place))
        if found is None:
            self.queues.session.free_slot(place.lease, place.slot)
            raise EntryGone(place.key.decode())
        self._check_lease(found)
        return found

    def wait(self, place: Place, deadline: float | None) -> None:
        """Block until the predecessor may have been deleted since
        ``place.seen``, our lease is lost, the session closes, or the deadline (or a
        periodic re-check) comes.

        The watch, and when the look that covers its creation is due, are
        :class:`.waiting.WatchedWait`'s; the watch is one of the backend's shared
        stream (:mod:`.waitstream`): no thread, timer or stream of its own."""
        if place.predecessor is None:
            return
        queues = self.queues
        watched = WatchedWait(self, place)
        assert queues.waits is not None, "an asyncio backend waits through AsyncEtcdQueue"
        watch = queues.waits.watch(watched.request)
        watched.start(time.monotonic(), queues.recheck_interval, deadline)
        # Everything after the watch exists runs under the finally that ends it: a
        # signal handler that raises (run's SIGTERM) may interrupt even add_waker().
        try:
            if not queues.session.add_waker(place.lease, watch.wake):
                return
            while (step := watched.due(time.monotonic())) is not Step.END:
                if step is Step.READ_ON:
                    step = watched.got(watch.get(watched.read_for))
                if step is Step.LOOK:
                    step = watched.looked_at(self._look(place))
                if step is Step.END:
                    break
            if watched.spinning(time.monotonic()):
                time.sleep(0.05)  # a member that refuses at once: do not spin
        finally:
            queues.session.remove_waker(place.lease, watch.wake)
            watch.close()

    def withdraw(self, place: Place) -> bool:
        budget = self.budget.withdrawal()
        return self.queues.withdraw(place, budget=min(budget, 1.0) if self._failing else budget)

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
        response = self.queues.conn.txn(self.put_last_request(key, lease), budget=self.budget.request())
        found = self.put_last_result(response, key, lease, slot)
        if found is not None and self.to_look(found):
            found = self._look(found)
        if found is None:
            self.queues.session.free_slot(lease, slot)
        return found

    def _put_if_empty(self, key: bytes, lease: Lease, slot: int) -> Place | None:
        """Put our key only if nobody holds or waits: one transaction, nothing to undo."""
        response = self.queues.conn.txn(self.put_if_empty_request(key, lease), budget=self.budget.request())
        found = self.put_if_empty_result(response, key, lease, slot)
        if found is None:
            self.queues.session.free_slot(lease, slot)
        return found

    def _look(self, place: Place, *, fresh_from: int = 0) -> Place | None:
        """``place`` as etcd shows it now (see :meth:`look_result`). With ``fresh_from``
        (the revision of the event that woke us), first a serializable read, kept if it
        :meth:`reflects` that revision: a linearizable read waits for etcd's raft loop,
        which under contention is busy writing other contenders' puts to its log."""
        conn, budget = self.queues.conn, self.budget
        try:
            if fresh_from:
                response = conn.txn(self.look_request(place, serializable=True), budget=budget.request())
                if self.reflects(response, fresh_from):
                    return self.look_result(response, place)
            response = conn.txn(self.look_request(place), budget=budget.request())
        except BackendUnavailable:
            self._failing = True
            raise
        return self.look_result(response, place)

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
