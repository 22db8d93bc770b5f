"""What the held keys' watch stream means, without I/O: :class:`HeldKeysBook`, shared by
the blocking :class:`.heldkeys.HeldKeys` (a thread) and the asyncio
:class:`.aio_heldkeys.AsyncHeldKeys` (a task). They only send the requests it returns,
read the responses it is given, and report what it says was lost or must be read.

The rules (see :mod:`.heldkeys`): a watch per held key, created from the revision after
the one at which the key was last seen present, so no deletion between the grant and
the watch is missed (nor one before a watch deferred by the front end is due: a grant
released first costs no request at all); on a stream opened again, every key watched
before is watched from "now" and read once when etcd confirmed the watches; a watch
whose start was compacted away is created again from now, the key read once; a DELETE
event of a watched key (NOPUT: there is no other) loses the grant that holds the key.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from etcd3 import etcdrpc

from fencing_coord.errors import FencingCoordError
from fencing_coord.typeless import FrozenValue

from .places import EtcdGrant

__all__ = ["HeldKeysBook", "StreamPause", "WatchNews", "WatchOrder", "watch_request"]

#: A request for the stream, as plain values: ``(key, start_revision)`` creates a watch
#: of ``key``, an ``int`` cancels that watch id. The front ends make the message only as
#: the stream sends it (:func:`watch_request`): orders wait in their queue until gRPC
#: takes them, hundreds when many grants come at once or the process is starved, and a
#: protobuf message is about 1 KiB of C memory where a tuple is ~60 B (issue 13).
WatchOrder = tuple[bytes, int] | int


# Frozen values written out, not dataclasses: making a dataclass costs about a millisecond
# at import, on the path of a process's first grant (issue 13).


class _Creating(FrozenValue):
    """A create request sent on the stream, awaiting etcd's ``created`` answer (etcd
    answers a stream's creates in the order they were sent)."""

    __match_args__ = ("grant", "check")

    grant: EtcdGrant
    #: Read the key once the watch exists (it was not watched for a while).
    check: bool

    def __init__(self, grant: EtcdGrant, check: bool) -> None:
        object.__setattr__(self, "grant", grant)
        object.__setattr__(self, "check", check)


class WatchNews(FrozenValue):
    """What one watch response means: ``requests`` to send on the stream (in order),
    grants whose key was ``deleted`` (to report lost), grants whose key must be read
    now (``unchecked``: watched again after a gap)."""

    __match_args__ = ("requests", "deleted", "unchecked")

    requests: tuple[WatchOrder, ...]
    deleted: tuple[EtcdGrant, ...]
    unchecked: tuple[EtcdGrant, ...]

    def __init__(self, requests: tuple[WatchOrder, ...] = (), deleted: tuple[EtcdGrant, ...] = (),
                 unchecked: tuple[EtcdGrant, ...] = ()) -> None:
        object.__setattr__(self, "requests", requests)
        object.__setattr__(self, "deleted", deleted)
        object.__setattr__(self, "unchecked", unchecked)


_NOTHING = WatchNews()


class HeldKeysBook:
    """The held grants and their watches on the current stream. Not thread-safe: the
    blocking front end calls it under its lock; the asyncio one from the loop only.
    Every request it returns must be sent, in the order returned, on the open stream."""

    __slots__ = ("_creating", "_deferred", "_grants", "_ids", "_unchecked", "_unwatched", "_watching", "streaming")

    def __init__(self) -> None:
        #: The grants watched, by key (one grant holds a key at a time).
        self._grants: dict[bytes, EtcdGrant] = {}
        #: etcd's watch id -> the grant it watches, once created on the current stream.
        self._watching: dict[int, EtcdGrant] = {}
        self._ids: dict[EtcdGrant, int] = {}
        self._creating: collections.deque[_Creating] = collections.deque()
        self._unchecked: list[EtcdGrant] = []
        #: Grants added while no stream was open: never watched yet, so nothing missed.
        self._unwatched: set[EtcdGrant] = set()
        #: Grants whose watch waits until a time (time.monotonic()), in the order added:
        #: never watched yet either. Removed at once when released, no request sent.
        self._deferred: dict[EtcdGrant, float] = {}
        #: A stream is open (between :meth:`opened` and :meth:`closed`).
        self.streaming = False

    @property
    def idle(self) -> bool:
        """No grant to watch now (none held, or all deferred): no stream is needed yet."""
        return len(self._grants) == len(self._deferred)

    @property
    def holding(self) -> bool:
        """A grant is held (its watch created, due or deferred)."""
        return bool(self._grants)

    @property
    def next_due(self) -> float | None:
        """When the first deferred watch is due (time.monotonic()); None: none is."""
        return next(iter(self._deferred.values()), None)

    def add(self, grant: EtcdGrant, *, due: float | None = None) -> WatchOrder | None:
        """Watch ``grant``'s key: the create request to send now, if a stream is open.

        With ``due`` (a time.monotonic(), not earlier than the ``due`` of any grant
        deferred before), nothing is sent now: the watch is created by the first
        :meth:`take_due` at or after ``due`` if the grant is still held then, from the
        same revision, so a deletion meanwhile is reported by the watch's first event."""
        previous = self._grants.get(grant.place.key)
        if previous is not None and previous is not grant:  # its holder is gone: never watch it
            self._deferred.pop(previous, None)
            self._unwatched.discard(previous)
        self._grants[grant.place.key] = grant
        if due is not None:
            self._deferred[grant] = due
            return None
        if self.streaming:
            return self._create(grant, _after_seen(grant), check=False)
        self._unwatched.add(grant)
        return None

    def remove(self, grant: EtcdGrant) -> WatchOrder | None:
        """Stop watching ``grant``'s key (released, or known lost): the cancel request to
        send now, if its watch exists on the open stream."""
        if self._grants.get(grant.place.key) is grant:
            del self._grants[grant.place.key]
        self._unwatched.discard(grant)
        if self._deferred.pop(grant, None) is not None:
            return None
        watch_id = self._ids.pop(grant, None)
        if watch_id is None:
            return None
        del self._watching[watch_id]
        return watch_id if self.streaming else None  # a cancel's order is its watch id

    def take_due(self, now: float) -> list[WatchOrder]:
        """The deferred watches due at ``now`` (time.monotonic()) or before: their
        creates to send now, from the revision after the one their key was seen at.
        With no stream open, none: they are created on the next (see :meth:`opened`)."""
        requests = []
        while self._deferred:
            grant, due = next(iter(self._deferred.items()))
            if due > now:
                break
            del self._deferred[grant]
            if self.streaming:
                requests.append(self._create(grant, _after_seen(grant), check=False))
            else:
                self._unwatched.add(grant)
        return requests

    def opened(self) -> list[WatchOrder]:
        """A new stream is open: the creates to send on it, one per held key whose
        watch is not deferred."""
        self.streaming = True
        self._watching.clear()
        self._ids.clear()
        self._creating.clear()
        self._unchecked.clear()
        requests = []
        for grant in self._grants.values():
            if grant in self._deferred:
                continue
            if grant in self._unwatched:
                requests.append(self._create(grant, _after_seen(grant), check=False))
            else:  # watched before, on a stream now gone: from now, read once in place
                requests.append(self._create(grant, 0, check=True))
        self._unwatched.clear()
        return requests

    def closed(self) -> None:
        """The stream ended: its watches are gone (the next one re-creates them)."""
        self.streaming = False

    def handle(self, response: Any) -> WatchNews:
        """What watch ``response`` means. Raises FencingCoordError when etcd refused a
        watch (the stream must be opened again)."""
        requests: list[WatchOrder] = []
        deleted: list[EtcdGrant] = []
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
                requests.append(watch_id)  # cancel it
        elif response.compact_revision:
            # The start revision was compacted away: watch from now, and read the key.
            grant = self._watching.pop(watch_id, None)
            if grant is not None:
                del self._ids[grant]
                requests.append(self._create(grant, 0, check=True))
        if response.events:  # NOPUT: a deletion of the watched key
            grant = self._watching.pop(watch_id, None)
            if grant is not None:
                del self._ids[grant]
                requests.append(watch_id)  # cancel it
                if self._grants.get(grant.place.key) is grant:
                    del self._grants[grant.place.key]
                    deleted.append(grant)
        unchecked: list[EtcdGrant] = []
        if not self._creating and self._unchecked:
            unchecked, self._unchecked = self._unchecked, []
        if not (requests or deleted or unchecked):
            return _NOTHING
        return WatchNews(tuple(requests), tuple(deleted), tuple(unchecked))

    def _create(self, grant: EtcdGrant, start_revision: int, *, check: bool) -> WatchOrder:
        self._creating.append(_Creating(grant, check))
        return (grant.place.key, start_revision)


class StreamPause:
    """How long to wait before opening the stream again: a member that fails at once
    must not make the caller spin (50 ms, doubling to 1 s; a stream that lived 1 s
    or more starts over at 50 ms)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0.05

    def after(self, started: float) -> float:
        """Seconds to wait after a stream opened at ``started`` (time.monotonic()) ended."""
        if time.monotonic() - started >= 1.0:
            self._next = 0.05
            return 0.0
        pause, self._next = self._next, min(self._next * 2, 1.0)
        return pause


def _after_seen(grant: EtcdGrant) -> int:
    """The revision after the one at which ``grant``'s key was last seen present."""
    return max(grant.place.revision, grant.place.seen) + 1


def watch_request(order: WatchOrder) -> Any:
    """The ``etcdrpc.WatchRequest`` that carries ``order``."""
    if isinstance(order, int):
        return etcdrpc.WatchRequest(cancel_request=etcdrpc.WatchCancelRequest(watch_id=order))
    key, start_revision = order
    return etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
        key=key, start_revision=start_revision, filters=[etcdrpc.WatchCreateRequest.NOPUT]))
