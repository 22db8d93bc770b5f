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
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fencing_coord.config import BackendURL, OptionReader
from fencing_coord.election import Leader
from fencing_coord.errors import ConfigurationError, InvalidArgument, LockLost
from fencing_coord.interface import Capabilities, Grant, LockBackend, LockState

__all__ = ["MemoryBackend"]

Clock = Callable[[], float]

# How often a waiter re-reads an injected clock: it cannot be told when a test moves it.
_INJECTED_CLOCK_POLL = 0.01


@dataclass
class _Lease:
    grant: Grant
    clock: Clock
    ttl: float
    expires_at: float
    value: bytes = b""

    def expired(self) -> bool:
        return self.clock() >= self.expires_at


@dataclass(eq=False)
class _Ticket:
    identity: str
    wake: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Queue:
    """One lock or election: the holder's lease, then the waiters in arrival order."""

    lease: _Lease | None = None
    queue: deque[_Ticket] = field(default_factory=deque)
    watchers: list[Callable[[], None]] = field(default_factory=list)


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
        """Drop an expired holder (reporting it lost) and wake the next waiter."""
        if queue.lease is not None and queue.lease.expired():
            queue.lease.grant.mark_lost("lease expired")
            queue.lease = None
            self.changed(queue)
        if queue.lease is None and queue.queue:
            # Only the head is woken: each waiter waits on its predecessor alone.
            queue.queue[0].wake.set()

    @staticmethod
    def changed(queue: _Queue) -> None:
        for notify in queue.watchers:
            notify()


_tables: dict[str, _Table] = {}
_tables_mutex = threading.Lock()


def _table(name: str) -> _Table:
    with _tables_mutex:
        return _tables.setdefault(name, _Table())


class MemoryBackend(LockBackend):
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
    ) -> None:
        super().__init__(ttl=ttl, namespace=namespace, identity=identity)
        self._table = _table(table_name)
        self._clock: Clock = clock if clock is not None else time.monotonic
        self._leases: dict[int, _Lease] = {}
        self._waiting: set[_Ticket] = set()  # woken by close(), which withdraws them
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        if clock is None:
            self._keepalive = threading.Thread(
                target=self._renew_loop, name="fencing-coord-memory-keepalive", daemon=True
            )
            self._keepalive.start()

    @classmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> MemoryBackend:
        reader = OptionReader(url, options)
        common = reader.common()
        clock = reader.get("clock", None, _check_clock)
        reader.finish()
        if len(url.hosts) > 1 or (url.hosts and url.hosts[0][1] is not None) or url.path:
            raise ConfigurationError(
                f"{url.raw!r}: memory:// takes one table name and no port or path, e.g. memory://demo"
            )
        name = url.hosts[0][0] if url.hosts else ""
        return cls(name, ttl=common.ttl, namespace=common.namespace, identity=common.identity, clock=clock)

    # -- the lock SPI ----------------------------------------------------------------

    def _acquire(self, name: str, deadline: float | None, on_queued: Callable[[], object] | None) -> Grant | None:
        return self._enqueue(("lock", self.namespace, name), b"", deadline, on_queued)

    def _renew(self, grant: Grant) -> None:
        with self._table.mutex:
            queue = self._table.queues[grant.handle]
            self._table.settle(queue)
            lease = self._leases.get(id(grant))
            if lease is None or queue.lease is not lease:
                grant.mark_lost("lease expired")
                raise LockLost(f"{grant!r} expired before it was renewed")
            lease.expires_at = self._clock() + self.ttl

    def _release(self, grant: Grant) -> bool:
        with self._table.mutex:
            lease = self._leases.pop(id(grant), None)
            queue = self._table.queues[grant.handle]
            held = lease is not None and queue.lease is lease and not lease.expired()
            if lease is not None and queue.lease is lease:
                queue.lease = None
                self._table.changed(queue)
            self._table.settle(queue)
            return held

    def _describe(self, name: str) -> LockState:
        with self._table.mutex:
            queue = self._table.queues.get(("lock", self.namespace, name))
            if queue is None:
                return LockState(name, None, None)
            self._table.settle(queue)
            waiters = tuple(t.identity for t in queue.queue)
            if queue.lease is None:
                return LockState(name, None, None, waiters)
            return LockState(name, queue.lease.grant.holder, queue.lease.grant.token, waiters)

    def _names(self) -> list[str]:
        with self._table.mutex:
            names = []
            for (kind, namespace, name), queue in self._table.queues.items():
                if kind == "lock" and namespace == self.namespace:
                    self._table.settle(queue)
                    if queue.lease is not None or queue.queue:
                        names.append(name)
            return names

    def _close(self, held: list[Grant]) -> None:
        self._stop.set()
        with self._table.mutex:
            for ticket in self._waiting:
                ticket.wake.set()
        for grant in held:
            self._release(grant)
        if self._keepalive is not None:
            self._keepalive.join()

    # -- the election SPI --------------------------------------------------------------

    def _campaign(
        self, name: str, value: bytes, deadline: float | None, on_queued: Callable[[], object] | None
    ) -> Grant | None:
        return self._enqueue(("election", self.namespace, name), value, deadline, on_queued)

    def _proclaim(self, grant: Grant, value: bytes) -> None:
        with self._table.mutex:
            queue = self._table.queues[grant.handle]
            self._table.settle(queue)
            lease = self._leases.get(id(grant))
            if lease is None or queue.lease is not lease:
                raise LockLost(f"{grant!r} is no longer the leader")
            lease.value = value
            self._table.changed(queue)

    def _leader(self, name: str) -> Leader | None:
        with self._table.mutex:
            queue = self._table.queues.get(("election", self.namespace, name))
            if queue is None:
                return None
            self._table.settle(queue)
            lease = queue.lease
            return None if lease is None else Leader(lease.grant.holder, lease.value, lease.grant.token)

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        with self._table.mutex:
            queue = self._table.queues.setdefault(("election", self.namespace, name), _Queue())
            queue.watchers.append(notify)

        def stop() -> None:
            with self._table.mutex:
                if notify in queue.watchers:
                    queue.watchers.remove(notify)

        return stop

    # -- the queue both share ------------------------------------------------------------

    def _enqueue(
        self, key: _Key, value: bytes, deadline: float | None, on_queued: Callable[[], object] | None
    ) -> Grant | None:
        table = self._table
        ticket = _Ticket(self.identity)
        with table.mutex:
            queue = table.queues.setdefault(key, _Queue())
            table.settle(queue)
            if queue.lease is None and not queue.queue:
                return self._grant(queue, key, value)
            if deadline is not None and time.monotonic() >= deadline:
                return None
            queue.queue.append(ticket)
            self._waiting.add(ticket)
        try:  # whatever ends this wait (a raising on_queued too) withdraws the ticket
            if on_queued is not None:
                on_queued()
            while True:
                ticket.wake.wait(self._wait_for(queue, deadline))
                with table.mutex:
                    ticket.wake.clear()
                    if self.closed:
                        raise InvalidArgument(f"{self!r} was closed while waiting for {key[2]!r}")
                    table.settle(queue)
                    if queue.lease is None and queue.queue[0] is ticket:
                        queue.queue.popleft()
                        return self._grant(queue, key, value)
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
        finally:
            with table.mutex:
                self._waiting.discard(ticket)
                if ticket in queue.queue:
                    queue.queue.remove(ticket)
                    table.settle(queue)

    def _wait_for(self, queue: _Queue, deadline: float | None) -> float | None:
        """How long a waiter may sleep before something it cannot be told of happens."""
        waits: list[float] = []
        if deadline is not None:
            waits.append(max(0.0, deadline - time.monotonic()))
        lease = queue.lease
        if lease is not None:
            if lease.clock is time.monotonic:
                waits.append(max(0.0, lease.expires_at - time.monotonic()))
            else:
                waits.append(_INJECTED_CLOCK_POLL)
        return min(waits) if waits else None

    def _grant(self, queue: _Queue, key: _Key, value: bytes) -> Grant:
        self._table.counter += 1
        grant = Grant(key[2], self._table.counter, self.identity, owner=self, handle=key, probe=self._probe)
        lease = _Lease(grant, self._clock, self.ttl, self._clock() + self.ttl, value)
        queue.lease = lease
        self._leases[id(grant)] = lease
        self._table.changed(queue)
        return grant

    def _probe(self, grant: Grant) -> None:
        with self._table.mutex:
            lease = self._leases.get(id(grant))
            if lease is not None and lease.expired():
                self._table.settle(self._table.queues[grant.handle])

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._table.mutex:
                now = self._clock()
                for key, lease in list(self._leases.items()):
                    if lease.expired():
                        # Paused past the TTL (GC, SIGSTOP): too late to renew; report it now.
                        del self._leases[key]
                        self._table.settle(self._table.queues[lease.grant.handle])
                    else:
                        lease.expires_at = now + self.ttl


def _check_clock(value: Any) -> Clock:
    if not callable(value):
        raise TypeError(f"clock must be a zero-argument callable returning seconds, not {type(value).__name__}")
    try:
        reading = value()
    except Exception as exc:
        raise ValueError(f"calling clock() failed: {exc!r}") from exc
    if isinstance(reading, bool) or not isinstance(reading, int | float):
        raise TypeError(f"clock() must return seconds as a number, not {type(reading).__name__}")
    return value  # type: ignore[no-any-return]
