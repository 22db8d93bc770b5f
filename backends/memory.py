"""``memory://NAME``: the in-process reference backend.

Every backend connected to the same ``NAME`` in one process shares one lock table, so
two clients can contend. Tokens come from the table's counter, which starts at 1, only
ever grows and is never reset while the process lives.

Each grant has its own lease: it lives ``ttl`` seconds of its holder's clock from its
grant or last ``renew`` and is expired at exactly ``grant + ttl`` (the boundary is
inclusive). With the default clock (``time.monotonic``) a background thread renews
every held grant each ``ttl / 3`` seconds, like the real backends' keepalives. With an
injected clock (``connect("memory://x", clock=fn)``) nothing renews in the background,
so a test moves the clock to expire a lease without sleeping.

Options: the common ones (``ttl``, ``namespace``, ``timeout``, ``identity``) and
``clock`` (keyword only: a zero-argument callable returning seconds).

The asyncio front end (:mod:`.aio_memory`) drives this same table: a blocking and an
async client of one ``NAME`` contend with each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fencing_coord.errors import InvalidArgument, LockLost
from fencing_coord.fairqueue import EntryGone, wait_in_line
from fencing_coord.grant import Grant
from fencing_coord.interface import Capabilities
from fencing_coord.records import Leader, LockState
from fencing_coord.spi import ElectionBackend, narrow
from fencing_coord.url import BackendURL

from .memory_options import Clock, memory_settings

__all__ = ["MemoryBackend", "MemoryGrant"]

# How often a waiter re-reads an injected clock: it cannot be told when a test moves it.
_INJECTED_CLOCK_POLL = 0.01


@dataclass
class _Lease:
    clock: Clock
    expires_at: float

    def expired(self) -> bool:
        return self.clock() >= self.expires_at


class Wake(Protocol):
    """How a waiting contender is woken (a threading.Event, or an asyncio one that any
    thread may set): set from any thread under the table's mutex, never blocking."""

    def set(self) -> None: ...

    def clear(self) -> None: ...


@dataclass(eq=False)
class _Entry:
    """One contender in a queue; the first entry holds once it has a lease."""

    identity: str
    value: bytes
    wake: Wake = field(default_factory=threading.Event)
    grant: MemoryGrant | None = None
    lease: _Lease | None = None


@dataclass
class _Queue:
    """One lock or election: its contenders in arrival order, the holder first."""

    entries: list[_Entry] = field(default_factory=list)
    watchers: list[Callable[[], None]] = field(default_factory=list)

    def holder(self) -> _Entry | None:
        head = self.entries[0] if self.entries else None
        return head if head is not None and head.lease is not None else None


class MemoryGrant(Grant):
    """A grant of the memory backend: the queue and entry it holds."""

    __slots__ = ("entry", "queue")

    def __init__(self, name: str, token: int, holder: str, *, owner: object, probe: Callable[[Grant], None],
                 queue: _Queue, entry: _Entry) -> None:
        super().__init__(name, token, holder, owner=owner, probe=probe)
        self.queue = queue
        self.entry = entry


@dataclass(frozen=True)
class _Place:
    entry: _Entry
    first: bool


# A queue is keyed by (kind, namespace, name), kind "lock" or "election", so a lock and
# an election of the same name never meet.
_Key = tuple[str, str, str]


class _Table:
    """One NAME's locks and elections; ``mutex`` guards everything in it."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.counter = 0
        self.queues: dict[_Key, _Queue] = {}

    def settle(self, queue: _Queue) -> None:
        """Drop an expired holder (reporting it lost) and wake the next contender."""
        holder = queue.holder()
        if holder is not None and holder.lease is not None and holder.lease.expired():
            queue.entries.pop(0)
            if holder.grant is not None:
                holder.grant.mark_lost("lease expired")
            self.changed(queue)
        if queue.entries and queue.entries[0].lease is None:
            # Only the head is woken: each waiter waits on its predecessor alone.
            queue.entries[0].wake.set()

    def remove(self, queue: _Queue, entry: _Entry) -> bool:
        """Take ``entry`` out of ``queue``; True if it was the live holder."""
        if entry not in queue.entries:
            return False
        held = queue.holder() is entry and entry.lease is not None and not entry.lease.expired()
        queue.entries.remove(entry)
        if entry.lease is not None:
            self.changed(queue)
        self.settle(queue)
        return held

    @staticmethod
    def changed(queue: _Queue) -> None:
        for notify in queue.watchers:
            notify()


_tables: dict[str, _Table] = {}
_tables_mutex = threading.Lock()


def _table(name: str) -> _Table:
    with _tables_mutex:
        return _tables.setdefault(name, _Table())


class _MemoryQueue:
    """The queue driver of one lock or election (see :mod:`fencing_coord.fairqueue`)."""

    def __init__(self, backend: MemoryBackend, key: _Key, value: bytes,
                 wake: Callable[[], Wake] = threading.Event) -> None:
        self.backend = backend
        self.table = backend._table
        self.queue = self.table.queues.setdefault(key, _Queue())
        self.key = key
        self.value = value
        self.wake = wake

    def enqueue(self, exclusive: bool) -> _Place | None:
        with self.table.mutex:
            self.table.settle(self.queue)
            if exclusive and self.queue.entries:
                return None
            entry = _Entry(self.backend.identity, self.value, self.wake())
            self.queue.entries.append(entry)
            self.backend._waiting.add(entry)
            return _Place(entry, self.queue.entries[0] is entry)

    def look(self, place: _Place) -> _Place:
        with self.table.mutex:
            if self.backend.closed:
                raise InvalidArgument(f"{self.backend!r} was closed while waiting for {self.key[2]!r}")
            self.table.settle(self.queue)
            if place.entry not in self.queue.entries:
                raise EntryGone(self.key[2])
            return _Place(place.entry, self.queue.entries[0] is place.entry)

    def wait(self, place: _Place, deadline: float | None) -> None:
        wake = place.entry.wake
        assert isinstance(wake, threading.Event)  # the blocking front end's
        wake.wait(self.wait_for(deadline))
        self.woken(place)

    def woken(self, place: _Place) -> None:
        with self.table.mutex:
            place.entry.wake.clear()  # look() reads the state under the same mutex next

    def withdraw(self, place: _Place) -> bool:
        with self.table.mutex:
            self.backend._waiting.discard(place.entry)
            return self.table.remove(self.queue, place.entry)

    def claim(self, place: _Place) -> MemoryGrant:
        backend = self.backend
        with self.table.mutex:
            backend._waiting.discard(place.entry)
            self.table.counter += 1
            grant = MemoryGrant(self.key[2], self.table.counter, backend.identity, owner=backend.front,
                                probe=backend._probe, queue=self.queue, entry=place.entry)
            place.entry.grant = grant
            place.entry.lease = _Lease(backend._clock, backend._clock() + backend.ttl)
            backend._leases[id(grant)] = grant
            self.table.changed(self.queue)
            return grant

    def wait_for(self, deadline: float | None) -> float | None:
        """How long a waiter may sleep before something it cannot be told of happens."""
        waits: list[float] = []
        if deadline is not None:
            waits.append(max(0.0, deadline - time.monotonic()))
        holder = self.queue.holder()
        lease = None if holder is None else holder.lease
        if lease is not None:
            if lease.clock is time.monotonic:
                waits.append(max(0.0, lease.expires_at - time.monotonic()))
            else:
                waits.append(_INJECTED_CLOCK_POLL)
        return min(waits) if waits else None


class MemoryBackend(ElectionBackend):
    """In-process reference backend; see the module docstring for its semantics."""

    schemes = ("memory",)
    capabilities = Capabilities(injectable_clock=True, multiprocess=False)

    def __init__(
        self,
        table_name: str = "",
        *,
        ttl: float = 10.0,
        namespace: str = "default",
        identity: str = "memory-client",
        clock: Clock | None = None,
        front: object = None,
    ) -> None:
        """``front``: the object that issues this backend's grants (their ``owner``),
        when it is not this one: the asyncio front end (:mod:`.aio_memory`), which then
        renews the leases itself."""
        super().__init__(ttl=ttl, namespace=namespace, identity=identity)
        self.front = self if front is None else front
        self._table = _table(table_name)
        self._clock: Clock = clock if clock is not None else time.monotonic
        self._leases: dict[int, MemoryGrant] = {}  # grants whose lease this backend keeps
        self._waiting: set[_Entry] = set()  # woken by close(), which withdraws them
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        if clock is None and front is None:
            self._keepalive = threading.Thread(
                target=self._renew_loop, name="fencing-coord-memory-keepalive", daemon=True
            )
            self._keepalive.start()

    @classmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> MemoryBackend:
        name, settings = cls.settings(url, options)
        return cls(name, **settings)

    settings = staticmethod(memory_settings)

    # -- the lock SPI ----------------------------------------------------------------

    def _acquire(self, name: str, deadline: float | None, on_queued: Callable[[], object] | None) -> Grant | None:
        return wait_in_line(_MemoryQueue(self, ("lock", self.namespace, name), b""), deadline, on_queued)

    def _renew(self, grant: Grant) -> None:
        mine = narrow(grant, MemoryGrant)
        with self._table.mutex:
            self._table.settle(mine.queue)
            lease = mine.entry.lease
            if id(mine) not in self._leases or mine.queue.holder() is not mine.entry or lease is None:
                mine.mark_lost("lease expired")
                raise LockLost(f"{mine!r} expired before it was renewed")
            lease.expires_at = self._clock() + self.ttl

    def _release(self, grant: Grant) -> bool:
        mine = narrow(grant, MemoryGrant)
        with self._table.mutex:
            self._leases.pop(id(mine), None)
            return self._table.remove(mine.queue, mine.entry)

    def _forget(self, grant: Grant) -> None:
        self._release(grant)  # no I/O here: the table is in this process

    def _describe(self, name: str) -> LockState:
        with self._table.mutex:
            queue = self._table.queues.get(("lock", self.namespace, name))
            if queue is None:
                return LockState(name, None, None)
            self._table.settle(queue)
            holder = queue.holder()
            waiting = queue.entries[1:] if holder is not None else queue.entries
            waiters = tuple(entry.identity for entry in waiting)
            if holder is None or holder.grant is None:
                return LockState(name, None, None, waiters)
            return LockState(name, holder.grant.holder, holder.grant.token, waiters)

    def _names(self) -> list[str]:
        with self._table.mutex:
            names = []
            for (kind, namespace, name), queue in self._table.queues.items():
                if kind == "lock" and namespace == self.namespace:
                    self._table.settle(queue)
                    if queue.entries:
                        names.append(name)
            return names

    def _close(self, held: list[Grant]) -> None:
        self._stop.set()
        with self._table.mutex:
            for entry in self._waiting:
                entry.wake.set()
        for grant in held:
            self._release(grant)
        if self._keepalive is not None:
            self._keepalive.join()

    # -- the election capability ------------------------------------------------------

    def _campaign(
        self, name: str, value: bytes, deadline: float | None, on_queued: Callable[[], object] | None
    ) -> Grant | None:
        return wait_in_line(_MemoryQueue(self, ("election", self.namespace, name), value), deadline, on_queued)

    def _proclaim(self, grant: Grant, value: bytes) -> None:
        mine = narrow(grant, MemoryGrant)
        with self._table.mutex:
            self._table.settle(mine.queue)
            if id(mine) not in self._leases or mine.queue.holder() is not mine.entry:
                raise LockLost(f"{mine!r} is no longer the leader")
            mine.entry.value = value
            self._table.changed(mine.queue)

    def _leader(self, name: str) -> Leader | None:
        with self._table.mutex:
            queue = self._table.queues.get(("election", self.namespace, name))
            if queue is None:
                return None
            self._table.settle(queue)
            holder = queue.holder()
            if holder is None or holder.grant is None:
                return None
            return Leader(holder.grant.holder, holder.value, holder.grant.token)

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        with self._table.mutex:
            queue = self._table.queues.setdefault(("election", self.namespace, name), _Queue())
            queue.watchers.append(notify)

        def stop() -> None:
            with self._table.mutex:
                if notify in queue.watchers:
                    queue.watchers.remove(notify)

        return stop

    # -- leases ---------------------------------------------------------------------------

    def _probe(self, grant: Grant) -> None:
        mine = narrow(grant, MemoryGrant)
        with self._table.mutex:
            lease = mine.entry.lease
            if id(mine) in self._leases and lease is not None and lease.expired():
                self._table.settle(mine.queue)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.renew_leases()

    def renew_leases(self) -> None:
        """Extend every lease this backend keeps (the keepalive, every ttl/3)."""
        with self._table.mutex:
            now = self._clock()
            for key, grant in list(self._leases.items()):
                lease = grant.entry.lease
                if lease is None or lease.expired():
                    # Paused past the TTL (GC, SIGSTOP): too late to renew; report it now.
                    del self._leases[key]
                    self._table.settle(grant.queue)
                else:
                    lease.expires_at = now + self.ttl

