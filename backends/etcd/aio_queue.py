"""The fair queue in etcd for asyncio: :class:`AsyncEtcdQueue`, the driver that
:func:`fencing_coord.fairqueue.await_in_line` runs. The same keys, requests and answers
as :class:`.queue.EtcdQueue` (whose request builders and readers it uses); a waiter
waits for its watch on the backend's shared ``grpc.aio`` watch stream
(:mod:`.aio_waitstream`), not in a thread."""

from __future__ import annotations

import asyncio
import logging
import time

from etcd3 import etcdrpc

from fencing_coord.errors import BackendUnavailable, InvalidArgument
from fencing_coord.fairqueue import EntryGone

from .aio_connection import AsyncConnection
from .aio_session import AsyncSession
from .aio_waitstream import AsyncWaitStream
from .places import EtcdGrant, LineRequests, Place
from .queue import Queues
from .waiting import Step, WatchedWait
from .wire import LeaseNotFound

__all__ = ["AsyncEtcdQueue", "delete_key"]

_log = logging.getLogger(__name__)


class AsyncEtcdQueue:
    """One wait in one queue (see :class:`.queue.EtcdQueue` for the requests)."""

    __slots__ = ("conn", "line", "queues", "session", "waits")

    def __init__(self, session: AsyncSession, line: LineRequests, queues: Queues, waits: AsyncWaitStream) -> None:
        self.session = session
        self.conn: AsyncConnection = session.conn
        self.line = line
        self.queues = queues
        #: The backend's shared stream of the waits' watches.
        self.waits = waits

    async def enqueue(self, exclusive: bool) -> Place | None:
        self._check_open()
        book, line = self.session.book, self.line
        # The live lease without a coroutine of its own, as nearly always.
        lease = book.live() or await self.session.lease(line.budget.request())
        slot = book.take_slot(lease)
        key = line.new_key(lease, slot)
        asked = time.monotonic()
        try:
            if exclusive:
                response = await self.conn.txn(line.put_if_empty_request(key, lease), budget=line.budget.request())
                place = line.put_if_empty_result(response, key, lease, slot)
            else:
                response = await self.conn.txn(line.put_last_request(key, lease), budget=line.budget.request())
                place = line.put_last_result(response, key, lease, slot)
                if place is not None and line.to_look(place):
                    place = await self._look(place)
        except LeaseNotFound as exc:
            book.vanished(lease, asked)  # before our keepalive told us: start over
            raise EntryGone(key.decode()) from exc
        except BaseException:
            # Our key may exist (a put whose answer was lost, or cancelled in flight): it
            # must not stay queued while our lease lives on. Deleted in the background.
            book.delete_later(key)
            raise
        if place is None:
            book.free_slot(lease, slot)
            if not exclusive:
                raise EntryGone(key.decode())  # deleted before we could read it
            return None
        self._check_lease(place)
        return place

    async def look(self, place: Place) -> Place:
        self._check_open()
        line = self.line
        found = line.granted_by_event(place) or await self._look(place, fresh_from=line.woken_at(place))
        if found is None:
            self.session.book.free_slot(place.lease, place.slot)
            raise EntryGone(place.key.decode())
        self._check_lease(found)
        return found

    async def wait(self, place: Place, deadline: float | None) -> None:
        """Until the predecessor may have been deleted since
        ``place.seen``, our lease is lost, the session closes, the deadline, or a
        periodic re-check (a silent stream is not trusted forever). The watch, and
        when the look that covers its creation is due, are
        :class:`.waiting.WatchedWait`'s; the watch is one of the backend's shared
        stream (:mod:`.aio_waitstream`): no task, timer or stream of its own but the
        loop's timer of each read. A cancellation of the task closes the watch (its
        cancel goes out later, see :mod:`.waitbook`) and is raised."""
        if place.predecessor is None:
            return
        book = self.session.book
        watched = WatchedWait(self.line, place)
        watch = self.waits.watch(watched.request)
        watched.start(time.monotonic(), self.queues.recheck_interval, deadline)
        try:
            if not book.add_waker(place.lease, watch.wake):
                return
            while (step := watched.due(time.monotonic())) is not Step.END:
                if step is Step.READ_ON:
                    step = watched.got(await watch.get(watched.read_for))
                if step is Step.LOOK:
                    step = watched.looked_at(await self._look(place))
                if step is Step.END:
                    break
            if watched.spinning(time.monotonic()):
                await asyncio.sleep(0.05)  # a member that refuses at once: do not spin
        finally:
            book.remove_waker(place.lease, watch.wake)
            watch.close()

    async def withdraw(self, place: Place) -> bool:
        """Delete ``place``'s key within the wait's withdrawal budget (see :func:`delete_key`)."""
        return await delete_key(self.session, place, self.line.budget.withdrawal())

    def claim(self, place: Place) -> EtcdGrant:
        """Bind a grant to ``place``'s lease (no request), so it is marked lost with it."""
        queues = self.queues
        grant = EtcdGrant(self.line.name, place.revision, queues.owner.identity, owner=queues.owner,
                          probe=queues.probe, place=place)
        if self.session.book.bind(place.lease, grant):
            return grant
        # The lease died between our becoming first and now: that is not a grant.
        self.session.book.delete_later(place.key)
        raise EntryGone(place.key.decode())

    async def _look(self, place: Place, *, fresh_from: int = 0) -> Place | None:
        """``place`` as etcd shows it now; serializable first with ``fresh_from`` (see
        :meth:`.queue.EtcdQueue._look`)."""
        line, conn = self.line, self.conn
        if fresh_from:
            response = await conn.txn(line.look_request(place, serializable=True), budget=line.budget.request())
            if line.reflects(response, fresh_from):
                return line.look_result(response, place)
        return line.look_result(await conn.txn(line.look_request(place), budget=line.budget.request()), place)

    def _check_lease(self, place: Place) -> None:
        """EntryGone (our key deleted in the background) if our lease has died meanwhile."""
        if self.session.book.check(place.lease) is not None:
            self.session.book.delete_later(place.key)
            raise EntryGone(place.key.decode())

    def _check_open(self) -> None:
        if self.queues.owner.closed:
            raise InvalidArgument(f"{self.queues.owner!r} is closed")


async def delete_key(session: AsyncSession, place: Place, budget: float | None, *, idempotent: bool = True,
                     to_the_end: bool = False) -> bool:
    """Delete ``place``'s key; True if it still existed. If etcd cannot be reached within
    ``budget`` (None: the ``timeout`` option), it is deleted in the background and
    BackendUnavailable raised. Not ``idempotent``: never sent again once it may have been
    applied (see :meth:`.queue.Queues.withdraw`). ``to_the_end``: a cancellation of the
    calling task meanwhile is raised only once the delete ended and was booked (see
    :meth:`.aio_connection.AsyncConnection.call_to_end`)."""
    request = etcdrpc.DeleteRangeRequest(key=place.key)
    cancelled: asyncio.CancelledError | None = None
    try:
        if to_the_end:
            response, cancelled = await session.conn.call_to_end("KV", "DeleteRange", request, budget=budget,
                                                                 idempotent=idempotent)
        else:
            response = await session.conn.call("KV", "DeleteRange", request, budget=budget, idempotent=idempotent)
    except BackendUnavailable:
        session.book.delete_later(place.key)
        raise
    except asyncio.CancelledError as exc:
        if isinstance(exc.__cause__, BackendUnavailable):  # from call_to_end: unavailable, then cancelled
            session.book.delete_later(place.key)
        raise
    session.book.free_slot(place.lease, place.slot)
    if cancelled is not None:
        raise cancelled
    return int(response.deleted) > 0
