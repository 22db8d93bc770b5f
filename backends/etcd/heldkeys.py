"""The held keys of one backend, watched rather than polled: one watch stream per backend
carries one watch per held key (created when the grant is made, cancelled at release),
so a key deleted out of band (an operator's ``etcdctl del``) is reported at once, and
the keepalive rounds cost etcd nothing per held key.

A watch is created from the revision after the one at which the grant's key was last
seen present, so no deletion between the grant and the watch is missed. When the stream
must be opened again (its member failed, the connection moved to another member, or a
watch's start was compacted away) the watches are created anew from "now" and, once
etcd confirmed them, the affected keys are read once (one transaction per 128 keys):
what was deleted while nothing watched is reported then.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from fencing_coord.errors import FencingCoordError

from .connection import Connection
from .heldbook import HeldKeysBook, StreamPause
from .places import EtcdGrant
from .wire import status_code

__all__ = ["HeldKeys"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Stop:
    """For the stream's request iterator: the stream is over."""


class HeldKeys:
    """Watches the keys of the grants handed to :meth:`add` until :meth:`remove`.

    ``deleted(grant)`` is called from the watch thread when a grant's key was deleted
    (the caller marks it lost); ``check(grants)`` reads the keys of ``grants`` and
    reports the deleted ones the same way. One daemon thread per backend."""

    def __init__(self, conn: Connection, *, deleted: Callable[[EtcdGrant], None],
                 check: Callable[[list[EtcdGrant]], None], label: str) -> None:
        self.conn = conn
        self.deleted = deleted
        self.check = check
        self._lock = threading.Lock()
        self._book = HeldKeysBook()  # under _lock
        self._requests: queue.SimpleQueue[Any] | None = None
        self._call: Any = None
        self._member = -1
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fencing-coord-etcd-held-{label}", daemon=True)
        self._thread.start()

    # -- from the backend ----------------------------------------------------------------

    def add(self, grant: EtcdGrant) -> None:
        """Watch ``grant``'s key from the revision after the one it was last seen at."""
        with self._lock:
            self._send(self._book.add(grant))
        self._wake.set()

    def remove(self, grant: EtcdGrant) -> None:
        """Stop watching ``grant``'s key (released, or reported deleted)."""
        with self._lock:
            self._send(self._book.remove(grant))

    def keepalive_round(self) -> None:
        """From the keepalive thread: when the connection moved to another member, open
        the stream there too (a member cut off from the others may leave it silent)."""
        with self._lock:
            call = self._call if self._member not in (-1, self.conn.current_member) else None
        if call is not None:
            call.cancel()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    # -- the watch thread ------------------------------------------------------------------

    def _send(self, *requests: Any) -> None:
        """Put ``requests`` on the stream (under _lock: in the book's order)."""
        for request in requests:
            if request is not None and self._requests is not None:
                self._requests.put(request)

    def _run(self) -> None:
        pause = StreamPause()
        while not self._stop.is_set():
            with self._lock:
                idle = self._book.idle
            if idle:
                self._wake.wait()
                self._wake.clear()
                continue
            started = time.monotonic()
            try:
                self._follow()
            except Exception:  # whatever it was, this thread must go on
                _log.exception("%s: the held keys' watch failed", self.conn.label)
            self._stop.wait(pause.after(started))

    def _follow(self) -> None:
        """Open one stream, watch every held key on it, and follow it until it ends."""
        requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def stream() -> Iterator[Any]:
            while not isinstance(request := requests.get(), _Stop):
                yield request

        try:
            index, call = self.conn.watch(stream())
        except (FencingCoordError, ValueError):  # ValueError: grpc's "closed channel"
            return
        with self._lock:
            self._requests, self._call, self._member = requests, call, index
            self._send(*self._book.opened())
        if self._stop.is_set():
            call.cancel()
        try:
            for response in call:
                self._handle(response)
        except grpc.RpcError as exc:
            if status_code(exc) != grpc.StatusCode.CANCELLED:
                self.conn.note_failure(index, exc)
        finally:
            with self._lock:
                self._requests, self._call, self._member = None, None, -1
                self._book.closed()
            requests.put(_Stop())
            call.cancel()

    def _handle(self, response: Any) -> None:
        with self._lock:
            news = self._book.handle(response)
            self._send(*news.requests)
        for grant in news.deleted:
            with contextlib.suppress(Exception):
                self.deleted(grant)
        if news.unchecked:
            try:
                self.check(list(news.unchecked))
            except FencingCoordError:  # etcd unreachable: open the stream again, and read again
                _log.debug("%s: reading the held keys failed", self.conn.label, exc_info=True)
                raise
