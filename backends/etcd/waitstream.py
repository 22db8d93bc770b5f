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
member) is cancelled once no wait is left on it. The bookkeeping is
:class:`.waitbook.WaitBook`'s, shared with the asyncio front end
(:mod:`.aio_waitstream`); this module holds the stream, its threads and the lock.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from fencing_coord.errors import InvalidArgument

from .connection import Connection
from .waitbook import ENDED, Routed, Wait, WaitBook, stream_failed

__all__ = ["ENDED", "WaitStream", "WaitWatch"]

_log = logging.getLogger(__name__)


class _Stream:
    """One open stream: its call, its requests, and its book."""

    __slots__ = ("book", "call", "requests")

    def __init__(self, book: WaitBook, call: Any, requests: queue.SimpleQueue[Any]) -> None:
        self.book = book
        self.call = call
        self.requests = requests

    def apply(self, routed: Routed) -> None:
        """Send and cancel as ``routed`` says (under the lock: requests keep their order)."""
        for request in routed.send:
            self.requests.put(request)
        if routed.cancel:
            self.call.cancel()


class WaitWatch(Wait):
    """One wait's watch on the shared stream: :meth:`get` its responses, :meth:`close`
    it once the wait is over; :meth:`wake` (any thread) ends the wait's :meth:`get`."""

    __slots__ = ("_box", "_owner", "_stream")

    def __init__(self, owner: WaitStream, stream: _Stream) -> None:
        super().__init__()
        self._owner = owner
        self._stream = stream
        self._box: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def get(self, timeout: float | None) -> Any:
        """The next response of this watch; None once ``timeout`` seconds passed with
        none; :data:`ENDED` when the stream ended or :meth:`wake` was called."""
        try:
            return self._box.get(timeout=timeout)
        except queue.Empty:
            return None

    def put(self, response: Any) -> None:
        self._box.put(response)

    def wake(self) -> None:
        self._box.put(ENDED)

    def close(self) -> None:
        """Stop this watch (its cancel goes out with a later create, see the module)."""
        with self._owner._lock:
            self._stream.apply(self._stream.book.close(self))


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
            if stream is None or not stream.book.serves(self.conn.current_member):
                if stream is not None and stream.book.retire():
                    stream.call.cancel()
                stream = self._stream = self._open()
            watch = WaitWatch(self, stream)
            stream.apply(Routed(send=stream.book.add(watch, create)))
        return watch

    def close(self) -> None:
        """End the stream (every wait on it ends)."""
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.call.cancel()

    def _open(self) -> _Stream:
        """A new stream and its reader thread (under _lock)."""
        requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def sent() -> Iterator[Any]:
            while (request := requests.get()) is not None:
                yield request

        index, call = self.conn.watch(sent())
        stream = _Stream(WaitBook(index), call, requests)
        threading.Thread(target=self._read, args=(stream,), daemon=True,
                         name=f"fencing-coord-etcd-waits-{self.conn.label}").start()
        return stream

    # -- the reader thread -----------------------------------------------------------------

    def _read(self, stream: _Stream) -> None:
        try:
            for response in stream.call:
                with self._lock:
                    routed = stream.book.route(response)
                    stream.apply(routed)
                if routed.wait is not None:
                    routed.wait.put(response)
        except grpc.RpcError as exc:
            stream_failed(self.conn, stream.book.member, exc)
        except Exception:  # whatever it was, the waits on it must end
            _log.exception("%s: reading the waits' watch stream failed", self.conn.label)
        finally:
            with self._lock:
                if self._stream is stream:
                    self._stream = None
                waits = stream.book.end()
            stream.requests.put(None)
            stream.call.cancel()
            for wait in waits:
                wait.put(ENDED)
