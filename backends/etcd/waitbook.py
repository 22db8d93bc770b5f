"""What the waits' shared watch stream means, without I/O: :class:`WaitBook`, the
bookkeeping of one stream, shared by the blocking :class:`.waitstream.WaitStream`
(threads and a lock) and the asyncio :class:`.aio_waitstream.AsyncWaitStream` (tasks).
They hold the book's stream call, send the requests it returns in that order, cancel the
call when it says so, and give a wait the response it names; it does no I/O and takes
no lock (the blocking front end calls it under its own).

The protocol (see :mod:`.waitstream`): etcd answers the creates of one stream in the
order they were sent, each with a ``created`` response naming the watch's id, and sends
a watch's events only after that answer: answers are matched to waits in order, then
events by id. A closed wait's cancel goes out with the next create (or once
``CANCELS_AT_ONCE`` are due); a create etcd refused retires the stream (etcd 3.4 would
hold back the events of another watch on it), as does a move to another member; a
retired stream is cancelled once no wait is left on it.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, NamedTuple

import grpc
from etcd3 import etcdrpc

from .retry import Members
from .wire import status_code

__all__ = ["CANCELS_AT_ONCE", "ENDED", "Routed", "Wait", "WaitBook", "cancel_request", "stream_failed"]

_log = logging.getLogger(__name__)

#: What a wait's ``get`` returns when its stream ended or the wait was woken.
ENDED = object()

#: Deferred cancels sent without waiting for the next create.
CANCELS_AT_ONCE = 16

_NOTHING: tuple[Any, ...] = ()


class Wait:
    """One wait's watch as the book sees it: its ``id`` once etcd confirmed it (None
    before, or once etcd cancelled it), and whether the wait ``closed`` it. The front
    ends subclass it with the wait's box and :meth:`put`."""

    __slots__ = ("closed", "id")

    def __init__(self) -> None:
        self.id: int | None = None
        self.closed = False

    def put(self, response: Any) -> None:
        """Give the wait ``response`` (or :data:`ENDED`): the front end's box."""
        raise NotImplementedError


class Routed(NamedTuple):
    """What one response (or a close) asks of the front end: ``send`` these requests
    on the stream, in order; ``cancel`` the stream call (the stream is over, or will
    not be used again); give the response to ``wait`` (None: to nobody)."""

    send: tuple[Any, ...] = _NOTHING
    cancel: bool = False
    wait: Wait | None = None


_IDLE = Routed()


class WaitBook:
    """The state of one stream opened on ``member``: creates not yet answered (in
    order), live watches by id, deferred cancels, and whether the stream is ``retired``
    (no new waits) or ``ended`` (every wait on it was ended)."""

    __slots__ = ("_cancels", "_pending", "_watches", "ended", "member", "retired")

    def __init__(self, member: int) -> None:
        self.member = member
        self._pending: collections.deque[Wait] = collections.deque()  # creates not yet answered
        self._watches: dict[int, Wait] = {}
        self._cancels: list[Any] = []  # deferred cancel requests
        self.ended = False
        self.retired = False  # no new waits (a create was refused, or the member moved)

    def serves(self, member: int) -> bool:
        """Whether a new wait may use this stream while ``member`` is in use."""
        return not self.ended and not self.retired and self.member == member

    def retire(self) -> bool:
        """No new wait uses this stream (one opens another); True: cancel its call now,
        no wait is left on it."""
        if self.ended:
            return False
        self.retired = True
        return self.unused()

    def add(self, wait: Wait, create: Any) -> tuple[Any, ...]:
        """Book ``wait``, whose watch ``create`` asks for: the requests to send now (the
        deferred cancels, then ``create``)."""
        self._pending.append(wait)
        sent = (*self._cancels, create)
        self._cancels.clear()
        return sent

    def close(self, wait: Wait) -> Routed:
        """``wait`` is over: what to do (nothing when it was closed already or the
        stream ended). Its cancel is deferred; a create not answered yet is cancelled
        once it is (:meth:`route`)."""
        if wait.closed:
            return _IDLE
        wait.closed = True
        if self.ended:
            return _IDLE
        # Its id while etcd still serves it (None: not confirmed yet, or cancelled by etcd).
        live = wait.id if wait.id is not None and self._watches.pop(wait.id, None) is wait else None
        if self.unused():
            # Its last wait, on a stream no new wait will use: end it, even while a
            # create is unanswered (a member that stalled must not keep it alive).
            return Routed(cancel=True)
        if live is not None:
            self._cancels.append(cancel_request(live))
            if len(self._cancels) >= CANCELS_AT_ONCE:
                sent = tuple(self._cancels)
                self._cancels.clear()
                return Routed(send=sent)
        return _IDLE

    def route(self, response: Any) -> Routed:
        """What ``response`` asks for: the wait it is for (none, or one that is over:
        None), and what to send or whether to cancel the call."""
        watch_id = int(response.watch_id)
        if response.created:
            if not self._pending:
                return _IDLE  # never: one answer per create
            wait = self._pending.popleft()
            if response.canceled:
                # Refused (permissions, an expired token). etcd 3.4 answers such a
                # create with watch id 0 and then holds back the events of the
                # stream's live watch 0 (some releases stop reading the stream
                # altogether): end the stream, which wakes every wait on it; the
                # next wait opens a new one.
                self.retired = True
                return Routed(cancel=True, wait=wait)
            wait.id = watch_id
            if wait.closed:
                if self.unused():
                    return Routed(cancel=True)  # its last wait: the stream is not used again
                return Routed(send=(cancel_request(watch_id),))
            self._watches[watch_id] = wait
            return Routed(wait=wait)
        found = self._watches.get(watch_id)
        if found is not None and response.canceled:
            del self._watches[watch_id]
        return Routed(wait=found)

    def end(self) -> list[Wait]:
        """The stream is over: the waits still on it (to wake)."""
        self.ended = True
        waits = [*self._pending, *self._watches.values()]
        self._pending.clear()
        self._watches.clear()
        return waits

    def unused(self) -> bool:
        """Whether the stream is retired and no wait is left on it."""
        return self.retired and not self._watches and all(wait.closed for wait in self._pending)


def cancel_request(watch_id: int) -> Any:
    """The request that cancels watch ``watch_id``."""
    return etcdrpc.WatchRequest(cancel_request=etcdrpc.WatchCancelRequest(watch_id=watch_id))


def stream_failed(conn: Members, member: int, exc: grpc.RpcError) -> None:
    """The waits' stream on ``member`` of ``conn`` failed with ``exc``: noted on the
    connection (see :meth:`.retry.Members.note_failure`), unless it was our own cancel.
    The front end ends every wait on the stream (:meth:`WaitBook.end`)."""
    if status_code(exc) != grpc.StatusCode.CANCELLED:
        _log.debug("%s: the waits' watch stream failed", conn.label, exc_info=exc)
        conn.note_failure(member, exc)
