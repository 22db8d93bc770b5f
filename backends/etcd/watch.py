"""A watch on a key prefix for observers of an election: a daemon thread that calls back
on every change and re-opens its stream on another member when one fails."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from etcd3 import etcdrpc

from fencing_coord.errors import FencingCoordError

from .connection import Connection
from .wire import prefix_end, status_code

__all__ = ["PrefixWatch", "start_timer"]

_log = logging.getLogger(__name__)


class PrefixWatch:
    """Calls ``notify()`` from a daemon thread whenever a key under ``prefix`` may have
    changed: on every event, and each time the watch is (re-)established, since changes
    made while it was down are not replayed. A stream that fails (its member died or
    lost its leader) is opened again on the next member; a silent one is re-opened
    every ``recheck_interval`` seconds. Ends with :meth:`stop` or once ``closed()``
    (the backend was closed)."""

    def __init__(self, conn: Connection, prefix: bytes, notify: Callable[[], None], *, recheck_interval: float,
                 closed: Callable[[], bool]) -> None:
        self.conn = conn
        self.recheck_interval = recheck_interval
        self.closed = closed
        self.create = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=prefix, range_end=prefix_end(prefix)))
        self.notify = notify
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._thread = threading.Thread(target=self._run, name=f"fencing-coord-etcd-watch-{prefix.decode()}",
                                        daemon=True)

    def start(self) -> Callable[[], None]:
        self._thread.start()
        return self.stop

    def stop(self) -> None:
        """Stop watching; no ``notify`` call starts after this returns. Idempotent."""
        with self._lock:
            self.stopped.set()
            call = self._call
        if call is not None:
            call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        pause = 0.05
        while not self.stopped.is_set() and not self.closed():
            if self._watch():
                pause = 0.05
            else:  # a member that fails at once: do not spin
                self.stopped.wait(pause)
                pause = min(pause * 2, 1.0)

    def _watch(self) -> bool:
        """Follow one watch stream until it ends; False if its member failed (the
        connection then moves on to the next member)."""
        conn = self.conn
        ended = threading.Event()

        def requests() -> Iterator[Any]:
            yield self.create
            ended.wait()  # etcd ends the watch when the client half-closes the stream

        try:
            index, call = conn.watch(requests())
        except (FencingCoordError, ValueError):  # ValueError: grpc's "closed channel"
            return False
        with self._lock:
            if self.stopped.is_set():
                call.cancel()
            self._call = call
        # A member that does not confirm the watch within one attempt is given up on
        # (paused, cut off); a confirmed but silent stream is re-opened now and then.
        timer = start_timer(conn.attempt_timeout, call.cancel)
        created = False
        try:
            for response in call:
                if response.canceled:
                    break
                if response.created and not created:
                    created = True
                    timer.cancel()
                    timer = start_timer(self.recheck_interval, call.cancel)
                with self._lock:
                    if self.stopped.is_set():
                        return True
                    self.notify()
        except grpc.RpcError as exc:
            if status_code(exc) != grpc.StatusCode.CANCELLED:
                conn.note_failure(index, exc)
                return False
        finally:
            timer.cancel()
            ended.set()
            call.cancel()
            with self._lock:
                self._call = None
        if created or self.stopped.is_set() or self.closed():
            return True
        conn.move_on(index)
        return False


def start_timer(seconds: float, fn: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(seconds, fn)
    timer.daemon = True  # never holds up the interpreter's exit
    timer.start()
    return timer
