"""The held keys of one asyncio backend, watched rather than polled: one ``grpc.aio``
watch stream per backend, followed by one task, carries one watch per held key, by the
rules of :class:`.heldbook.HeldKeysBook` (those of the blocking :mod:`.heldkeys`). A key
deleted out of band is reported within ``watch_after`` and a round trip, and keepalive
rounds cost etcd nothing per held key.

As in the blocking front end, a key is watched once its grant has been held
``watch_after`` seconds (from the revision after the one it was last seen at, so a
deletion meanwhile is the watch's first event): the common short hold costs no create
and no cancel on the stream, nor their answers, even while the stream is open. One
timer of the loop, armed when no other is, times the deferred watches: none per grant."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from fencing_coord.errors import FencingCoordError

from .aio_connection import AsyncConnection
from .heldbook import HeldKeysBook, StreamPause, WatchOrder, watch_request
from .places import EtcdGrant
from .wire import status_code

__all__ = ["AsyncHeldKeys"]

_log = logging.getLogger(__name__)


class AsyncHeldKeys:
    """Watches the keys of the grants handed to :meth:`add` until :meth:`remove`, each
    from ``watch_after`` seconds after its :meth:`add`.

    ``deleted(grant)`` is awaited from the watch task when a grant's key was deleted (the
    caller marks it lost); ``check(grants)`` reads the keys of ``grants`` and reports the
    deleted ones the same way. :meth:`add` and :meth:`remove` never suspend: they queue
    the stream's requests. One task per backend, started by the first grant still held
    when the event loop next runs its callbacks; it opens the stream, on which the
    watches are created when due."""

    def __init__(self, conn: AsyncConnection, *, deleted: Callable[[EtcdGrant], Awaitable[None]],
                 check: Callable[[list[EtcdGrant]], Awaitable[None]], label: str, watch_after: float) -> None:
        self.conn = conn
        self.deleted = deleted
        self.check = check
        self.label = label
        #: Seconds a grant is held before its key is watched.
        self.watch_after = watch_after
        #: The timer of the first deferred watch (None: no watch is deferred).
        self._timer: asyncio.TimerHandle | None = None
        self._book = HeldKeysBook()
        #: The open stream's requests (None between streams), and the stream itself.
        self._requests: asyncio.Queue[WatchOrder | None] | None = None
        self._call: Any = None
        self._member = -1
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: A check whether the stream must be opened is scheduled.
        self._looking = False
        self._closed = False

    def add(self, grant: EtcdGrant) -> None:
        """Watch ``grant``'s key in ``watch_after`` seconds if it is still held then, from
        the revision after the one it was last seen at."""
        self._book.add(grant, due=time.monotonic() + self.watch_after)
        if self._timer is None:  # else it fires earlier than this grant is due
            self._timer = asyncio.get_running_loop().call_later(self.watch_after, self._due)
        if self._task is None and not self._looking:
            # Start the task if the grant is still held once the caller yields (a lock
            # released at once, the common short hold, costs no task step then).
            self._looking = True
            asyncio.get_running_loop().call_soon(self._look)

    def _due(self) -> None:
        """The timer: create the watches due now (or have the task open the stream they
        are created on), and arm the timer again for the next deferred one."""
        self._timer = None
        if self._closed:
            return
        now = time.monotonic()
        self._send(*self._book.take_due(now))
        due = self._book.next_due
        if due is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, due - now), self._due)
        if self._requests is None and not self._book.idle:
            self._wake.set()

    def _look(self) -> None:
        self._looking = False
        if not self._book.holding or self._closed:
            return
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name=f"fencing-coord-etcd-held-{self.label}")
        self._wake.set()

    def remove(self, grant: EtcdGrant) -> None:
        """Stop watching ``grant``'s key (released, or known lost)."""
        self._send(self._book.remove(grant))

    def keepalive_round(self) -> None:
        """After a keepalive: when the connection moved to another member, open the
        stream there too (a member cut off from the others may leave it silent)."""
        if self._call is not None and self._member not in (-1, self.conn.current_member):
            self._call.cancel()

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _send(self, *requests: WatchOrder | None) -> None:
        for request in requests:
            if request is not None and self._requests is not None:
                self._requests.put_nowait(request)

    async def _run(self) -> None:
        pause = StreamPause()
        while True:
            if not self._book.holding:
                self._wake.clear()
                await self._wake.wait()
                continue
            started = time.monotonic()
            try:
                await self._follow()
            except Exception:  # whatever it was, this task must go on
                _log.exception("%s: the held keys' watch failed", self.label)
            await asyncio.sleep(pause.after(started))

    async def _follow(self) -> None:
        """Open one stream, watch every held key on it, and follow it until it ends."""
        requests: asyncio.Queue[WatchOrder | None] = asyncio.Queue()

        async def stream() -> AsyncIterator[Any]:
            while (request := await requests.get()) is not None:
                yield watch_request(request)

        try:
            index, call = self.conn.watch(stream())
        except (FencingCoordError, ValueError):  # ValueError: grpc's "closed channel"
            return
        self._requests, self._call, self._member = requests, call, index
        self._send(*self._book.opened())
        try:
            while (response := await call.read()) is not grpc.aio.EOF:
                await self._handle(response)
        except grpc.RpcError as exc:
            if status_code(exc) != grpc.StatusCode.CANCELLED:
                self.conn.note_failure(index, exc)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            # grpc's answer to the stream cancelled by keepalive_round or the channel's close
        finally:
            self._requests, self._call, self._member = None, None, -1
            self._book.closed()
            requests.put_nowait(None)
            call.cancel()

    async def _handle(self, response: Any) -> None:
        news = self._book.handle(response)
        self._send(*news.requests)
        for grant in news.deleted:
            with contextlib.suppress(Exception):
                await self.deleted(grant)
        if news.unchecked:
            try:
                await self.check(list(news.unchecked))
            except FencingCoordError:  # etcd unreachable: open the stream again, and read again
                _log.debug("%s: reading the held keys failed", self.label, exc_info=True)
                raise
