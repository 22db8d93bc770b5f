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

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from etcd3 import etcdrpc

from fencing_coord.errors import FencingCoordError

from .connection import Connection
from .places import EtcdGrant
from .wire import status_code

__all__ = ["HeldKeys"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Creating:
    """A create request sent on the stream, awaiting etcd's ``created`` answer (etcd
    answers a stream's creates in the order they were sent)."""

    grant: EtcdGrant
    #: Read the key once the watch exists (it was not watched for a while).
    check: bool


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
        #: The grants watched, by key (one grant holds a key at a time).
        self._grants: dict[bytes, EtcdGrant] = {}
        #: etcd's watch id -> the grant it watches, once created on the current stream.
        self._watching: dict[int, EtcdGrant] = {}
        self._ids: dict[EtcdGrant, int] = {}
        self._creating: collections.deque[_Creating] = collections.deque()
        self._unchecked: list[EtcdGrant] = []
        #: Grants added while no stream was open: never watched yet, so nothing missed.
        self._unwatched: set[EtcdGrant] = set()
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
        place = grant.place
        with self._lock:
            self._grants[place.key] = grant
            if self._requests is not None:
                self._create(grant, self._after_seen(grant), check=False)
            else:
                self._unwatched.add(grant)
        self._wake.set()

    def remove(self, grant: EtcdGrant) -> None:
        """Stop watching ``grant``'s key (released, or reported deleted)."""
        with self._lock:
            if self._grants.get(grant.place.key) is grant:
                del self._grants[grant.place.key]
            self._unwatched.discard(grant)
            watch_id = self._ids.pop(grant, None)
            if watch_id is not None:
                del self._watching[watch_id]
                if self._requests is not None:
                    self._requests.put(etcdrpc.WatchRequest(cancel_request=etcdrpc.WatchCancelRequest(
                        watch_id=watch_id)))

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

    @staticmethod
    def _after_seen(grant: EtcdGrant) -> int:
        """The revision after the one at which ``grant``'s key was last seen present."""
        return max(grant.place.revision, grant.place.seen) + 1

    def _create(self, grant: EtcdGrant, start_revision: int, *, check: bool) -> None:
        assert self._requests is not None
        self._creating.append(_Creating(grant, check))
        self._requests.put(etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=grant.place.key, start_revision=start_revision, filters=[etcdrpc.WatchCreateRequest.NOPUT])))

    def _run(self) -> None:
        pause = 0.05
        while not self._stop.is_set():
            with self._lock:
                idle = not self._grants
            if idle:
                self._wake.wait()
                self._wake.clear()
                continue
            started = time.monotonic()
            try:
                self._follow()
            except Exception:  # whatever it was, this thread must go on
                _log.exception("%s: the held keys' watch failed", self.conn.label)
            if time.monotonic() - started < 1.0:
                self._stop.wait(pause)  # a member that fails at once: do not spin
                pause = min(pause * 2, 1.0)
            else:
                pause = 0.05

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
            self._watching.clear()
            self._ids.clear()
            self._creating.clear()
            self._unchecked.clear()
            for grant in self._grants.values():
                if grant in self._unwatched:
                    self._create(grant, self._after_seen(grant), check=False)
                else:  # watched before, on a stream now gone: from now, read once in place
                    self._create(grant, 0, check=True)
            self._unwatched.clear()
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
            requests.put(_Stop())
            call.cancel()

    def _handle(self, response: Any) -> None:
        lost: list[EtcdGrant] = []
        with self._lock:
            watch_id = int(response.watch_id)
            if response.created:
                creating = self._creating.popleft()
                if response.canceled or watch_id < 0:
                    raise FencingCoordError(f"etcd refused a watch: {response.cancel_reason}")
                if self._grants.get(creating.grant.place.key) is creating.grant:
                    self._watching[watch_id] = creating.grant
                    self._ids[creating.grant] = watch_id
                    if creating.check:
                        self._unchecked.append(creating.grant)
                else:  # released before etcd confirmed the watch
                    self._cancel(watch_id)
            elif response.compact_revision:
                # The start revision was compacted away: watch from now, and read the key.
                grant = self._watching.pop(watch_id, None)
                if grant is not None:
                    del self._ids[grant]
                    self._create(grant, 0, check=True)
            if response.events:  # NOPUT: a deletion of the watched key
                grant = self._watching.pop(watch_id, None)
                if grant is not None:
                    del self._ids[grant]
                    self._cancel(watch_id)
                    if self._grants.get(grant.place.key) is grant:
                        del self._grants[grant.place.key]
                        lost.append(grant)
            unchecked: list[EtcdGrant] = []
            if not self._creating and self._unchecked:
                unchecked, self._unchecked = self._unchecked, []
        for grant in lost:
            with contextlib.suppress(Exception):
                self.deleted(grant)
        if unchecked:
            try:
                self.check(unchecked)
            except FencingCoordError:  # etcd unreachable: open the stream again, and read again
                _log.debug("%s: reading the held keys failed", self.conn.label, exc_info=True)
                raise

    def _cancel(self, watch_id: int) -> None:
        if self._requests is not None:
            self._requests.put(etcdrpc.WatchRequest(cancel_request=etcdrpc.WatchCancelRequest(watch_id=watch_id)))
