"""The held keys of one backend, watched rather than polled: one watch stream per backend
carries one watch per held key (created once the grant has been held ``watch_after``
seconds, cancelled at release), so a key deleted out of band (an operator's ``etcdctl
del``) is reported promptly, and the keepalive rounds cost etcd nothing per held key.

A watch is created from the revision after the one at which the grant's key was last
seen present, so no deletion between the grant and the watch is missed: etcd replays
it as the watch's first event. Waiting ``watch_after`` first makes the common short
hold free: a grant released before costs no create and no cancel on the stream, no
work for etcd and no response to read. The timing side may create a watch up to one
``watch_after`` late, so that grants coming one after another do not wake it each time.
A deletion is then reported at most twice ``watch_after`` plus etcd's catching up of a
watch that starts in the past (it serves such "unsynced" watches every 100 ms) after it
happened, well within the ttl / 3 at which held keys used to be polled. The deferred watches are timed by the stream's
request iterator (gRPC's own thread for the stream) while a stream is open, and by our
thread otherwise: no thread or timer per grant.

When the stream must be opened again (its member failed, the connection moved to
another member, or a watch's start was compacted away) the watches are created anew
from "now" and, once etcd confirmed them, the affected keys are read once (one
transaction per 128 keys): what was deleted while nothing watched is reported then.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from fencing_coord.errors import FencingCoordError

from .connection import Connection
from .heldbook import HeldKeysBook, StreamPause, WatchOrder, watch_request
from .places import EtcdGrant
from .wire import status_code

__all__ = ["HeldKeys"]

_log = logging.getLogger(__name__)


# Messages for the stream's request iterator, told apart by their class (plain classes:
# making a dataclass costs about a millisecond at import, issue 13).


class _Stop:
    """For the stream's request iterator: the stream is over."""

    __slots__ = ()


class _Due:
    """For the stream's request iterator: a deferred watch may be due before it planned
    to look (or it has not looked yet)."""

    __slots__ = ()


_DUE = _Due()


class HeldKeys:
    """Watches the keys of the grants handed to :meth:`add` until :meth:`remove`, each
    from ``watch_after`` to twice that after its :meth:`add` (see the module's docstring).

    ``deleted(grant)`` is called from the watch thread when a grant's key was deleted
    (the caller marks it lost); ``check(grants)`` reads the keys of ``grants`` and
    reports the deleted ones the same way. One daemon thread per backend."""

    def __init__(self, conn: Connection, *, deleted: Callable[[EtcdGrant], None],
                 check: Callable[[list[EtcdGrant]], None], label: str, watch_after: float) -> None:
        self.conn = conn
        self.deleted = deleted
        self.check = check
        #: Seconds a grant is held before its key is watched.
        self.watch_after = watch_after
        self._lock = threading.Lock()
        self._book = HeldKeysBook()  # under _lock
        #: When the side timing the deferred watches (the stream's request iterator, or
        #: our thread between streams) looks next: an add due earlier wakes it.
        self._timer_at = math.inf  # under _lock
        #: When :meth:`add` last came (time.monotonic()), under _lock.
        self._added_at = -math.inf
        self._requests: queue.SimpleQueue[WatchOrder | _Due | _Stop] | None = None
        self._call: Any = None
        self._member = -1
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fencing-coord-etcd-held-{label}", daemon=True)
        self._thread.start()

    # -- from the backend ----------------------------------------------------------------

    def add(self, grant: EtcdGrant) -> None:
        """Watch ``grant``'s key in ``watch_after`` seconds if it is still held then, from
        the revision after the one it was last seen at."""
        with self._lock:
            self._added_at = now = time.monotonic()
            due = now + self.watch_after
            self._book.add(grant, due=due)
            if self._timer_at <= due + self.watch_after:
                # The timing side looks soon enough: this watch is created at most one
                # watch_after late, and the acquiring thread makes no thread switch.
                return
            self._timer_at = due  # woken once: later adds are due later still
            if self._requests is not None:
                self._requests.put(_DUE)
                return
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

    def _send(self, *requests: WatchOrder | None) -> None:
        """Put ``requests`` on the stream (under _lock: in the book's order)."""
        for request in requests:
            if request is not None and self._requests is not None:
                self._requests.put(request)

    def _take_due(self, requests: queue.SimpleQueue[WatchOrder | _Due | _Stop] | None) -> float:
        """Create the watches due now on the stream fed by ``requests`` (None: between
        streams, for the next one); when to look next (inf: when an add says so)."""
        with self._lock:
            if requests is not self._requests:  # not yet ours (a _DUE follows), or over
                return math.inf
            now = time.monotonic()
            self._send(*self._book.take_due(now))
            due = self._book.next_due
            if due is None and now - self._added_at < 2 * self.watch_after:
                # Grants came lately and went before their watches were due: look again
                # two watch_after from now rather than be woken by the next add (which
                # lets this look be one watch_after late). Grants held briefly, one after
                # another, would otherwise wake this thread (or the stream's) once or
                # twice for every one of them, each wake a thread switch on the acquiring
                # thread's path: with many processes on one lock, each gets a grant
                # about every 0.2 s, longer than watch_after, and was woken twice.
                due = now + 2 * self.watch_after
            self._timer_at = math.inf if due is None else due
            return self._timer_at

    def _run(self) -> None:
        pause = StreamPause()
        while not self._stop.is_set():
            look_at = self._take_due(None)
            with self._lock:
                idle = self._book.idle
            if idle:
                self._wake.wait(None if look_at == math.inf else max(0.0, look_at - time.monotonic()))
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
        requests: queue.SimpleQueue[WatchOrder | _Due | _Stop] = queue.SimpleQueue()

        def stream() -> Iterator[Any]:
            look_at = math.inf
            while True:
                try:
                    request = requests.get(
                        timeout=None if look_at == math.inf else max(0.0, look_at - time.monotonic()))
                except queue.Empty:
                    request = _DUE
                if isinstance(request, _Stop):
                    return
                if isinstance(request, _Due):
                    look_at = self._take_due(requests)
                else:
                    yield watch_request(request)

        try:
            index, call = self.conn.watch(stream())
        except (FencingCoordError, ValueError):  # ValueError: grpc's "closed channel"
            return
        with self._lock:
            self._requests, self._call, self._member = requests, call, index
            self._send(*self._book.opened())
            requests.put(_DUE)
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
