"""What both etcd queue drivers (:class:`.queue.EtcdQueue`, blocking, and
:class:`.aio_queue.AsyncEtcdQueue`) share without I/O: a contender's :class:`Place`, the
requests of one wait in one queue and what their answers mean, and when a watch event
alone makes a waiter first.

The round trips: ``enqueue`` is one transaction (put our key, read the queue's two
newest keys: the second newest is our predecessor), or with ``exclusive`` one
transaction that puts only if the queue is empty; ``look`` is one transaction (our key,
our predecessor; serializable after a wake-up, see :meth:`LineRequests.reflects`);
``wait`` holds one watch stream (see :mod:`.waiting`); ``withdraw`` is one delete. Both
transactions also count the keys older than ours. When the predecessor was the only one
(the holder), one watcher covers its key and ours, and the holder's DELETE event alone
makes us first: a handoff costs the holder's delete and no request of the waiter's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from etcd3 import etcdrpc

from fencing_coord.deadlines import RequestBudget
from fencing_coord.frontend import FrontEnd
from fencing_coord.grant import Grant
from fencing_coord.typeless import FrozenValue

from .session import Lease
from .wire import prefix_end, range_kvs

__all__ = ["EtcdGrant", "LineRequests", "Place", "QueueReads"]

_log = logging.getLogger(__name__)


class Place(FrozenValue):
    """A contender's place in a queue: its key, that key's create revision (the token),
    the lease the key is bound to and the key name's slot; and what it last saw: the key
    of its predecessor (None: first) and the revision it read at. A frozen value
    (:class:`~fencing_coord.typeless.FrozenValue`, not a dataclass: issue 13)."""

    __match_args__ = ("key", "revision", "lease", "slot", "predecessor", "seen", "head_before")

    key: bytes
    revision: int
    lease: Lease
    slot: int
    predecessor: bytes | None = None
    seen: int = 0
    #: At ``seen`` the predecessor was the only key older than ours (the holder): once
    #: it is deleted nobody precedes us, since no key created later can be older.
    head_before: bool = False

    def __init__(self, key: bytes, revision: int, lease: Lease, slot: int, predecessor: bytes | None = None,
                 seen: int = 0, head_before: bool = False) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "revision", revision)
        object.__setattr__(self, "lease", lease)
        object.__setattr__(self, "slot", slot)
        object.__setattr__(self, "predecessor", predecessor)
        object.__setattr__(self, "seen", seen)
        object.__setattr__(self, "head_before", head_before)

    @property
    def first(self) -> bool:
        return self.predecessor is None

    @property
    def prefix(self) -> bytes:
        """The prefix of the queue this place is in."""
        return self.key[: self.key.rindex(b"/") + 1]


class EtcdGrant(Grant):
    """A grant of the etcd backend: the place (key, create revision, lease) it holds."""

    __slots__ = ("place",)

    def __init__(self, name: str, token: int, holder: str, *, owner: FrontEnd,
                 probe: Callable[[Grant], None], place: Place) -> None:
        super().__init__(name, token, holder, owner=owner, probe=probe)
        self.place = place


#: A range sorted newest first by create revision (fields of an ``etcdrpc.RangeRequest``).
_NEWEST_FIRST: dict[str, Any] = {"sort_target": etcdrpc.RangeRequest.CREATE,
                                 "sort_order": etcdrpc.RangeRequest.DESCEND}
#: A compare that holds when a key was never created (fields of an ``etcdrpc.Compare``).
_NEVER_CREATED: dict[str, Any] = {"target": etcdrpc.Compare.CREATE, "result": etcdrpc.Compare.EQUAL,
                                  "create_revision": 0}
_VERSION_ZERO: dict[str, Any] = {"target": etcdrpc.Compare.VERSION, "result": etcdrpc.Compare.EQUAL, "version": 0}


class QueueReads:
    """The reads of one queue that every wait in it sends unchanged, as the fields of
    their ``RequestOp`` (made once per queue).

    The requests of :class:`LineRequests` are built in one constructor call from nested
    dicts: building their parts as messages first, each copied into its parent, cost
    3-4 times as much CPU (about 20 us per transaction; issue 13, contention)."""

    __slots__ = ("count_all", "end", "newest_two", "puts")

    #: How many put-last transactions a queue keeps (see :attr:`puts`).
    PUTS_KEPT = 4

    def __init__(self, prefix: bytes) -> None:
        self.end = prefix_end(prefix)
        self.newest_two: dict[str, Any] = {
            "request_range": {"key": prefix, "range_end": self.end, "limit": 2, **_NEWEST_FIRST}}
        self.count_all: dict[str, Any] = {"request_range": {"key": prefix, "range_end": self.end, "count_only": True}}
        #: Put-last transactions already built, by (key, lease id, value): a contender's
        #: key names come back (slots are reused once deleted), so a process that takes
        #: a lock again and again sends the same few. At most PUTS_KEPT (emptied when
        #: full: a new lease or value makes new ones); sent as they are, never changed.
        self.puts: dict[tuple[bytes, int, bytes], Any] = {}


class LineRequests:
    """The requests of one wait in the queue under ``prefix`` (whose keys hold
    ``value``), what their answers mean, and the wait's :class:`RequestBudget`."""

    def __init__(self, prefix: bytes, reads: QueueReads, name: str, value: bytes, budget: RequestBudget) -> None:
        self.budget = budget
        self.prefix = prefix
        self.end = reads.end
        self.newest_two = reads.newest_two
        self.count_all = reads.count_all
        self.puts = reads.puts
        self.name = name
        self.value = value
        #: The place whose predecessor, the holder, the wait saw deleted while its
        #: watcher covered our key too, and the revision of that DELETE: the next look
        #: needs no request (we are first).
        self._head_left: tuple[Place, int] | None = None
        #: The place whose wait ended with events, and their revision (see :meth:`woken_at`).
        self._woken: tuple[Place, int] | None = None

    def new_key(self, lease: Lease, slot: int) -> bytes:
        """The name of our entry's key under ``lease`` with ``slot``."""
        return self.prefix + f"{lease.id:x}-{slot}".encode()

    def put_last_request(self, key: bytes, lease: Lease) -> Any:
        """Put ``key`` (bound to ``lease``) unless it exists, and read the queue's two
        newest keys and its length; if it exists, read it. The same object for the same
        key, lease and value while the queue keeps it (see :attr:`QueueReads.puts`)."""
        puts = self.puts
        request = puts.get((key, lease.id, self.value))
        if request is None:
            if len(puts) >= QueueReads.PUTS_KEPT:
                puts.clear()
            request = puts[(key, lease.id, self.value)] = self._build_put_last(key, lease)
        return request

    def _build_put_last(self, key: bytes, lease: Lease) -> Any:
        return etcdrpc.TxnRequest(
            compare=[{"key": key, **_NEVER_CREATED}],
            success=[{"request_put": {"key": key, "value": self.value, "lease": lease.id}},
                     self.newest_two, self.count_all],
            # A retry of a put that was applied after all: find our key instead. (Only
            # this request can have made it: a slot is reused only once its key is gone.)
            failure=[{"request_range": {"key": key}}],
        )

    @staticmethod
    def put_last_result(response: Any, key: bytes, lease: Lease, slot: int) -> Place | None:
        """Our place from the answer to :meth:`put_last_request`: with its predecessor;
        or, when an earlier attempt had put the key, a place still to look at
        (:meth:`to_look`); None when the key is gone already."""
        if response.succeeded:
            newest = response.responses[1].response_range.kvs
            revision = int(response.header.revision)
            head_before = int(response.responses[2].response_range.count) == 2  # the holder and us
            return Place(key, revision, lease, slot, bytes(newest[1].key) if len(newest) > 1 else None, revision,
                         head_before)
        mine = range_kvs(response.responses[0])
        if mine:
            return Place(key, mine[0].create_revision, lease, slot, predecessor=b"?")
        return None

    @staticmethod
    def to_look(place: Place | None) -> bool:
        """Whether ``place`` (from :meth:`put_last_result`) must be looked at first."""
        return place is not None and not place.first and place.seen == 0

    def put_if_empty_request(self, key: bytes, lease: Lease) -> Any:
        return etcdrpc.TxnRequest(
            compare=[{"key": self.prefix, "range_end": self.end, **_VERSION_ZERO}],
            success=[{"request_put": {"key": key, "value": self.value, "lease": lease.id}}],
            failure=[{"request_range": {"key": key}}],
        )

    @staticmethod
    def put_if_empty_result(response: Any, key: bytes, lease: Lease, slot: int) -> Place | None:
        if response.succeeded:
            return Place(key, int(response.header.revision), lease, slot)
        mine = range_kvs(response.responses[0])
        if mine:
            # An earlier attempt of this request was applied after all, when the queue
            # was empty: our key is first.
            return Place(key, mine[0].create_revision, lease, slot)
        return None

    def look_request(self, place: Place, *, serializable: bool = False) -> Any:
        """Our key, our predecessor, and the count of keys older than ours; read from
        the member's own state, with no round through etcd's raft loop, when
        ``serializable`` (only if its answer :meth:`reflects` what the look needs)."""
        older = max(1, place.revision - 1)
        return etcdrpc.TxnRequest(success=[
            {"request_range": {"key": place.key, "serializable": serializable}},
            {"request_range": {"key": self.prefix, "range_end": self.end, "limit": 1, **_NEWEST_FIRST,
                               "max_create_revision": older, "serializable": serializable}},
            {"request_range": {"key": self.prefix, "range_end": self.end, "count_only": True,
                               "max_create_revision": older, "serializable": serializable}},
        ])

    @staticmethod
    def reflects(response: Any, revision: int) -> bool:
        """Whether the answer to a serializable :meth:`look_request` shows a state at
        least as new as ``revision`` (the event that woke us): keys older than ours are
        never created, only deleted, so none older there means none now; and our key's
        own watch (held keys) starts after the revision read, so a deletion of our key
        it did not show is reported. A member behind it (the connection moved since) is
        asked again, linearizably."""
        return int(response.header.revision) >= revision

    @staticmethod
    def look_result(response: Any, place: Place) -> Place | None:
        """``place`` as the answer to :meth:`look_request` shows it (predecessor, revision
        read at, whether the predecessor is the only older key); None when our key is gone."""
        responses = response.responses
        mine = responses[0].response_range.kvs  # a range of one key: none or one
        if not mine or mine[0].create_revision != place.revision:
            return None
        before = responses[1].response_range.kvs
        return Place(place.key, place.revision, place.lease, place.slot, bytes(before[0].key) if before else None,
                     int(response.header.revision), int(responses[2].response_range.count) == 1)

    @staticmethod
    def watch_request(place: Place) -> Any:
        """The one watch a waiter holds: deletions of its predecessor's key; behind the
        holder (``head_before``), of every key from the lower of the predecessor's and
        ours to the higher, both included.

        From "now", not from ``seen + 1``: etcd serves a watch that starts in the past
        from a catch-up loop that runs every 100 ms, which under contention would add
        tens of milliseconds to every handoff. What was deleted between ``seen`` and the
        watch's creation is caught by looking again once it is confirmed.

        Behind the holder, our own key is in the same watcher as the holder's because
        etcd orders the events of one watcher, not those of two watchers on one stream:
        a deletion of our key (a revoked lease) is then reported before the holder's
        later DELETE, which therefore makes us first (:meth:`granted_by_event`). Two
        watchers reported a revoked lease's delete after the holder's later one. The
        keys between the two names are newer contenders' (nobody older is left): their
        puts are filtered out, their deletes read past."""
        if not place.head_before:
            return etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
                key=place.predecessor, filters=[etcdrpc.WatchCreateRequest.NOPUT]))
        assert place.predecessor is not None
        low, high = sorted((place.predecessor, place.key))
        return etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=low, range_end=high + b"\0", filters=[etcdrpc.WatchCreateRequest.NOPUT]))

    def watched(self, place: Place, response: Any, *, covered: bool = False) -> bool:
        """Whether the watch ``response`` ends the wait at ``place`` (then look), as
        one with events on our key or the predecessor's, a cancellation or a compaction
        does. ``covered``: the watcher has reported every event since ``place.seen``
        (see :class:`.waiting.WatchedWait`); then events that delete the predecessor
        (the holder) but not our key make the next :meth:`granted_by_event` true."""
        if response.canceled or response.compact_revision:
            return True
        events = response.events
        if not events:
            return False
        ours = theirs = False  # events on our key; on the predecessor's (and its last revision)
        left = 0
        for event in events:
            kv = event.kv
            if kv.key == place.key:
                ours = True
            elif kv.key == place.predecessor:
                theirs, left = True, max(left, int(kv.mod_revision))
        if not ours and not theirs:
            return False  # a newer contender's key between ours and the holder's
        self._woken = (place, int(response.header.revision))
        if covered and place.head_before and not ours:
            self._head_left = (place, left)
        return True

    def granted_by_event(self, place: Place) -> Place | None:
        """``place`` made first, if its wait saw the holder's DELETE while its watcher
        covered our key (see :meth:`watched`); else None (look). Told once.

        Sound because at ``seen`` our key existed and the holder was the only older
        key (no key created later is older), and the one watcher that reported the
        holder's deletion would have reported our key's first. The place returned was
        seen at that DELETE's revision (not the response's header: in a catch-up
        response etcd puts its current revision there, maybe past events not yet
        sent), so its key's held watch starts right after it."""
        head_left = self._head_left
        if head_left is None or head_left[0] is not place:
            return None
        self._head_left = self._woken = None
        return Place(place.key, place.revision, place.lease, place.slot, None, head_left[1], False)

    def woken_at(self, place: Place) -> int:
        """The revision of the events that ended the last wait at ``place`` (0: none, or
        another place's): a look after it may be a serializable read that
        :meth:`reflects` it. Told once."""
        woken, self._woken = self._woken, None
        return woken[1] if woken is not None and woken[0] is place else 0
