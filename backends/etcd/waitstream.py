"""One watch stream per blocking backend for the watches of its waiting contenders
(:meth:`.queue.EtcdQueue.wait`), rather than a stream per wait.

A stream per wait cost gRPC two threads started and ended per wait (its request
thread, and the channel's polling thread once no call was left) and a stream opened
and cancelled: with 32 processes contending on 2 cores, about 1 ms of client CPU per
grant, a sixth of it (bench/contention.py). Here one stream, opened on the first wait and kept, carries
a watch per waiting contender: a wait costs a create and a cancel message on it, and
etcd orders one watcher's events exactly as on a stream of its own.

etcd answers the creates of one stream in the order it received them, each with a
``created`` response naming the watch's id, and sends a watch's events only after that
answer: the reader thread matches answers to waits in order, then events by id. A
wait's cancel is sent with the next create (or once 16 are due): the wait that ends
with its grant does not wake gRPC's request thread on its way. A stream that fails
(its member died or lost its leader: ``hasleader``) ends every wait on it, as a wait's
own stream did; the next wait opens another, on the member in use then. A create etcd
refused (an expired token, for one) ends the stream too: etcd 3.4 would hold back the
events of another watch on it. A stream left behind (the connection moved to another
member) is cancelled once no wait is left on it.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
from etcd3 import etcdrpc

from fencing_coord.errors import InvalidArgument

from .connection import Connection
from .wire import status_code

__all__ = ["ENDED", "WaitStream", "WaitWatch"]

_log = logging.getLogger(__name__)

#: What :meth:`WaitWatch.get` returns when the stream ended or the wait was woken.
ENDED = object()

_CANCELS_AT_ONCE = 16  # deferred cancels sent without waiting for the next create


class _Stream:
    """One open stream: its call, its requests, and the waits on it."""

    __slots__ = ("call", "cancels", "ended", "index", "pending", "requests", "retired", "watches")

    def __init__(self, index: int, call: Any, requests: queue.SimpleQueue[Any]) -> None:
        self.index = index
        self.call = call
        self.requests = requests
        self.pending: collections.deque[WaitWatch] = collections.deque()  # creates not yet answered
        self.watches: dict[int, WaitWatch] = {}
        self.cancels: list[Any] = []  # deferred cancel requests
        self.ended = False
        self.retired = False  # no new waits (a create was refused, or the member moved)


class WaitWatch:
    """One wait's watch on the shared stream: :meth:`get` its responses, :meth:`close`
    it once the wait is over; :meth:`wake` (any thread) ends the wait's :meth:`get`."""

    __slots__ = ("_box", "_owner", "_stream", "closed", "id")

    def __init__(self, owner: WaitStream, stream: _Stream) -> None:
        self._owner = owner
        self._stream = stream
        self._box: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.id: int | None = None
        self.closed = False

    def get(self, timeout: float | None) -> Any:
        """The next response of this watch; None once ``timeout`` seconds passed with
        none; :data:`ENDED` when the stream ended or :meth:`wake` was called."""
        try:
            return self._box.get(timeout=timeout)
        except queue.Empty:
            return None

    def wake(self) -> None:
        self._box.put(ENDED)

    def close(self) -> None:
        """Stop this watch (its cancel goes out with a later create, see the module)."""
        self._owner._close_watch(self)


class WaitStream:
    """The shared stream of one backend's waits (see the module). Threads: gRPC's two
    for the stream and a reader of ours, for as long as the stream lives."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._stream: _Stream | None = None  # under _lock
        self._closed = False

    def watch(self, create: Any) -> WaitWatch:
        """Start the watch that ``create`` (a WatchRequest with a create_request) asks
        for. Raises InvalidArgument once the backend is closed. Opening a stream does
        not wait for etcd: a member that fails ends the stream, and every wait on it."""
        with self._lock:
            if self._closed:
                raise InvalidArgument(f"{self.conn.label}: the backend is closed")
            stream = self._stream
            if stream is None or stream.ended or stream.retired or stream.index != self.conn.current_member:
                if stream is not None and not stream.ended:
                    stream.retired = True
                    if _unused(stream):
                        stream.call.cancel()
                stream = self._stream = self._open()
            watch = WaitWatch(self, stream)
            stream.pending.append(watch)
            _send_cancels(stream)
            stream.requests.put(create)
        return watch

    def close(self) -> None:
        """End the stream (every wait on it ends)."""
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.call.cancel()

    # -- under _lock -----------------------------------------------------------------------

    def _open(self) -> _Stream:
        requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def sent() -> Iterator[Any]:
            while (request := requests.get()) is not None:
                yield request

        index, call = self.conn.watch(sent())
        stream = _Stream(index, call, requests)
        threading.Thread(target=self._read, args=(stream,), daemon=True,
                         name=f"fencing-coord-etcd-waits-{self.conn.label}").start()
        return stream

    def _close_watch(self, watch: WaitWatch) -> None:
        with self._lock:
            if watch.closed:
                return
            watch.closed = True
            stream = watch._stream
            if stream.ended:
                return
            # Its id while etcd still serves it (None: not confirmed yet, or cancelled by etcd).
            live = watch.id if watch.id is not None and stream.watches.pop(watch.id, None) is watch else None
            if _unused(stream):
                # Its last wait, on a stream no new wait will use: end it, even while a
                # create is unanswered (a member that stalled must not keep it and its
                # threads alive).
                stream.call.cancel()
            elif live is not None:
                stream.cancels.append(_cancel(live))
                if len(stream.cancels) >= _CANCELS_AT_ONCE:
                    _send_cancels(stream)
            # else nothing to cancel now: a create not answered yet is cancelled once it is (_route)

    # -- the reader thread -----------------------------------------------------------------

    def _read(self, stream: _Stream) -> None:
        try:
            for response in stream.call:
                watch = self._route(stream, response)
                if watch is not None:
                    watch._box.put(response)
        except grpc.RpcError as exc:
            if status_code(exc) != grpc.StatusCode.CANCELLED:
                _log.debug("%s: the waits' watch stream failed", self.conn.label, exc_info=True)
                self.conn.note_failure(stream.index, exc)
        except Exception:  # whatever it was, the waits on it must end
            _log.exception("%s: reading the waits' watch stream failed", self.conn.label)
        finally:
            with self._lock:
                stream.ended = True
                if self._stream is stream:
                    self._stream = None
                waits = [*stream.pending, *stream.watches.values()]
                stream.pending.clear()
                stream.watches.clear()
            stream.requests.put(None)
            stream.call.cancel()
            for watch in waits:
                watch._box.put(ENDED)

    def _route(self, stream: _Stream, response: Any) -> WaitWatch | None:
        """The wait ``response`` is for (None: none, or one that is over)."""
        watch_id = int(response.watch_id)
        with self._lock:
            if response.created:
                if not stream.pending:
                    return None  # never: one answer per create
                watch = stream.pending.popleft()
                if response.canceled:
                    # Refused (permissions, an expired token). etcd 3.4 answers such a
                    # create with watch id 0 and then holds back the events of the
                    # stream's live watch 0 (some releases stop reading the stream
                    # altogether): end the stream, which wakes every wait on it; the
                    # next wait opens a new one.
                    stream.retired = True
                    stream.call.cancel()
                    return watch
                watch.id = watch_id
                if watch.closed:
                    if _unused(stream):
                        stream.call.cancel()  # its last wait: the stream is not used again
                    else:
                        stream.requests.put(_cancel(watch_id))
                    return None
                stream.watches[watch_id] = watch
                return watch
            found = stream.watches.get(watch_id)
            if found is not None and response.canceled:
                del stream.watches[watch_id]
            return found


def _unused(stream: _Stream) -> bool:
    """Whether a stream is retired and no wait is left on it (under the lock)."""
    return stream.retired and not stream.watches and all(watch.closed for watch in stream.pending)


def _send_cancels(stream: _Stream) -> None:
    """Send the deferred cancels (under the lock)."""
    for cancel in stream.cancels:
        stream.requests.put(cancel)
    stream.cancels.clear()


def _cancel(watch_id: int) -> Any:
    return etcdrpc.WatchRequest(cancel_request=etcdrpc.WatchCancelRequest(watch_id=watch_id))
