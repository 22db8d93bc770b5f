"""One ``grpc.aio`` watch stream per asyncio backend for the watches of its waiting
contenders (:meth:`.aio_queue.AsyncEtcdQueue.wait`), rather than a stream per wait: the
asyncio front end of :class:`.waitbook.WaitBook`, whose protocol and guarantees are the
blocking :mod:`.waitstream`'s.

A stream per wait cost the event loop about a fifth of its time under contention (the
stream's setup, its first write, its cancel). Here one stream, opened by the first wait
and kept, carries a watch per wait: a create and, later, a cancel on it. Two tasks per
stream, no thread: a reader that routes responses as the book says, and a writer, the
only one to ``write`` to the call (grpc.aio allows one write at a time), fed in order
by a queue. A wait's box is a deque and a future it awaits with a timer of the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import grpc
import grpc.aio

from fencing_coord.errors import InvalidArgument

from .aio_connection import AsyncConnection
from .waitbook import ENDED, Routed, Wait, WaitBook, stream_failed

__all__ = ["ENDED", "AsyncWaitStream", "AsyncWaitWatch"]

_log = logging.getLogger(__name__)


class _Stream:
    """One open stream: its call, its book and tasks, and the writer's queue of request
    batches (None: the stream ended)."""

    __slots__ = ("book", "call", "tasks", "to_write")

    def __init__(self, book: WaitBook, call: Any) -> None:
        self.book = book
        self.call = call
        self.to_write: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []

    def apply(self, routed: Routed) -> None:
        """What the book said: its requests to the writer (one batch, in order); the
        call cancelled if it says so."""
        if routed.send:
            self.to_write.put_nowait(routed.send)
        if routed.cancel:
            self.call.cancel()


class AsyncWaitWatch(Wait):
    """A wait's watch on the shared stream, made and used on the stream's loop. Await
    :meth:`get` for its responses; :meth:`wake` (from any thread) ends a :meth:`get`;
    :meth:`close` it once the wait is over."""

    __slots__ = ("_got", "_loop", "_stream", "_waiter")

    def __init__(self, stream: _Stream) -> None:
        super().__init__()
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._got: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    async def get(self, timeout: float) -> Any:
        """The next response of this watch; None once ``timeout`` seconds passed with
        none; :data:`ENDED` when the stream ended or :meth:`wake` was called. A
        cancellation of the caller is raised (then :meth:`close` the watch)."""
        if not self._got:
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(timeout, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._got:
                return None
        return self._got.popleft()

    def put(self, response: Any) -> None:
        self._got.append(response)
        if self._waiter is not None:
            _resolve(self._waiter)

    def wake(self) -> None:
        try:
            if asyncio.get_running_loop() is self._loop:
                self.put(ENDED)
                return
        except RuntimeError:
            pass  # no loop in this thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self.put, ENDED)

    def close(self) -> None:
        """Stop this watch (its cancel goes out with a later create, see :mod:`.waitbook`)."""
        self._stream.apply(self._stream.book.close(self))


class AsyncWaitStream:
    """The shared stream of one asyncio backend's waits (see the module)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._stream: _Stream | None = None  # the one new waits use
        self._open_streams: set[_Stream] = set()  # with those retired, not ended yet
        self._closed = False

    def watch(self, create: Any) -> AsyncWaitWatch:
        """Start the watch that ``create`` (a WatchRequest with a create_request) asks
        for; from a coroutine. Raises InvalidArgument once the backend is closed, and
        what opening a stream raises. Opening does not wait for etcd: a member that
        fails ends the stream, and every wait on it."""
        if self._closed:
            raise InvalidArgument(f"{self.conn.label}: the backend is closed")
        stream = self._serving()
        watch = AsyncWaitWatch(stream)
        stream.apply(Routed(send=stream.book.add(watch, create)))
        return watch

    def _serving(self) -> _Stream:
        """The stream a new wait uses: the one open on the member in use, else a new
        one (the old one is retired: cancelled now if no wait is left on it)."""
        stream = self._stream
        if stream is not None:
            if stream.book.serves(self.conn.current_member):
                return stream
            if stream.book.retire():
                stream.call.cancel()
        self._stream = self._open()
        return self._stream

    async def close(self) -> None:
        """End every stream (every wait on them ends) and their tasks."""
        self._closed = True
        self._stream = None
        tasks = [task for stream in self._open_streams for task in stream.tasks]
        for stream in list(self._open_streams):
            stream.call.cancel()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        # A reader cancelled before its first step never ran its finally: end its waits here.
        for stream in list(self._open_streams):
            self._open_streams.discard(stream)
            for wait in stream.book.end():
                wait.put(ENDED)

    def _open(self) -> _Stream:
        index, call = self.conn.watch()
        stream = _Stream(WaitBook(index), call)
        self._open_streams.add(stream)
        name = f"fencing-coord-etcd-waits-{self.conn.label}"
        stream.tasks += (asyncio.create_task(self._read(stream), name=name),
                         asyncio.create_task(self._write(stream), name=f"{name}-writer"))
        return stream

    async def _read(self, stream: _Stream) -> None:
        call = stream.call
        try:
            while (response := await call.read()) is not grpc.aio.EOF:
                stream.apply(routed := stream.book.route(response))
                if routed.wait is not None:
                    routed.wait.put(response)
        except grpc.RpcError as exc:
            stream_failed(self.conn, stream.book.member, exc)
        except asyncio.CancelledError:
            pass  # the call was cancelled (retired, or closed), or this task by close()
        except Exception:  # whatever it was, the waits on it must end
            _log.exception("%s: reading the waits' watch stream failed", self.conn.label)
        finally:
            if self._stream is stream:
                self._stream = None
            self._open_streams.discard(stream)
            stream.to_write.put_nowait(None)
            call.cancel()
            for wait in stream.book.end():
                wait.put(ENDED)

    async def _write(self, stream: _Stream) -> None:
        """Write the stream's requests in order until it ends (None)."""
        try:
            while (batch := await stream.to_write.get()) is not None:
                for request in batch:
                    await stream.call.write(request)
        except (asyncio.CancelledError, asyncio.InvalidStateError, grpc.RpcError):
            # The call ended (the reader ends every wait on it), or close() ended us.
            stream.call.cancel()
        except Exception:  # whatever it was, no request goes out after it: end the waits
            _log.exception("%s: writing to the waits' watch stream failed", self.conn.label)
            stream.call.cancel()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
