"""The session: one lease per backend (etcd's ``concurrency.Session``), kept alive in the
background, replaced when lost, and the clean-up of what could not be deleted at the time."""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from etcd3 import etcdrpc

from fencing_coord.errors import BackendUnavailable, ConfigurationError, FencingCoordError, InvalidArgument, LockLost
from fencing_coord.grant import Grant
from fencing_coord.typeless import FrozenValue

from .connection import Connection
from .wire import LeaseNotFound

__all__ = ["Cleanup", "DeleteKey", "Lease", "RevokeLease", "Session", "cleanup_request"]

_log = logging.getLogger(__name__)


# The values here are written out, not dataclasses: making a dataclass costs about a
# millisecond when the module is imported, on the path of a process's first grant (issue 13).


class RevokeLease(FrozenValue):
    """For the keepalive thread: revoke lease ``id`` (we consider it gone; etcd may not)."""

    __match_args__ = ("id",)

    id: int

    def __init__(self, id: int) -> None:
        object.__setattr__(self, "id", id)


class DeleteKey(FrozenValue):
    """For the keepalive thread: delete ``key`` (a contender's key we could not withdraw)."""

    __match_args__ = ("key",)

    key: bytes

    def __init__(self, key: bytes) -> None:
        object.__setattr__(self, "key", key)


#: What the keepalive thread carries out once etcd answers again.
Cleanup = RevokeLease | DeleteKey


class Lease:
    """One lease as this process knows it (mutable; equal only to itself, as an
    ``eq=False`` dataclass)."""

    id: int
    ttl: int
    #: time.monotonic() before which etcd certainly still has the lease: the send time of
    #: the last confirmed keepalive (or grant) plus the TTL it confirmed.
    confirmed_until: float
    grants: set[Grant]
    #: Why the lease is gone, once it is.
    dead: str | None
    #: Key-name numbers in use by this lease's contenders (see Session.take_slot).
    slots: set[int]
    #: Numbers below ``next_slot`` that are free again (a heap: the lowest first). Every
    #: number below ``next_slot`` is in ``slots`` or here, so taking one costs O(log n)
    #: whatever the number of keys held (a scan for the lowest free one cost O(n)).
    free_slots: list[int]
    next_slot: int

    def __init__(self, id: int, ttl: int, confirmed_until: float) -> None:
        self.id = id
        self.ttl = ttl
        self.confirmed_until = confirmed_until
        self.grants = set()
        self.dead = None
        self.slots = set()
        self.free_slots = []
        self.next_slot = 0

    def __repr__(self) -> str:
        return (f"Lease(id={self.id!r}, ttl={self.ttl!r}, confirmed_until={self.confirmed_until!r}, "
                f"grants={self.grants!r}, dead={self.dead!r}, slots={self.slots!r}, "
                f"free_slots={self.free_slots!r}, next_slot={self.next_slot!r})")


class Session:
    """The backend's lease (etcd's concurrency.Session): granted at connect, kept alive
    every ttl/3 by a daemon thread, replaced by a new one when lost. When it is lost,
    every grant bound to it is marked lost once and every waiter queued with it wakes."""

    def __init__(self, conn: Connection, ttl: int, label: str) -> None:
        self.conn = conn
        self.requested_ttl = ttl
        self.label = label
        self._lock = threading.Lock()
        self._grant_lock = threading.Lock()  # one LeaseGrant at a time
        self._lease: Lease | None = None
        self._wakers: dict[int, set[Callable[[], object]]] = {}
        self._cleanup: queue.SimpleQueue[Cleanup] = queue.SimpleQueue()
        self._stop = threading.Event()
        #: Called from the keepalive thread after each confirmed keepalive.
        self.after_keepalive: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"fencing-coord-etcd-keepalive-{label}", daemon=True)

    def start(self, budget: float | None = None) -> Lease:
        """Grant the first lease (within ``budget`` seconds) and start the keepalive."""
        lease = self.lease(budget)
        self._thread.start()
        return lease

    # -- leases --------------------------------------------------------------------

    def lease(self, budget: float | None = None) -> Lease:
        """The live lease, granting a new one if the last was lost."""
        with self._lock:
            lease = self._lease
        if lease is not None and self.check(lease) is None:
            return lease
        with self._grant_lock:
            with self._lock:
                if self._lease is not None and self._lease.dead is None:
                    return self._lease
            sent = time.monotonic()
            response = self.conn.call("Lease", "LeaseGrant", self.grant_request(), budget=budget)
            return self.install(response, sent)

    def grant_request(self) -> Any:
        return etcdrpc.LeaseGrantRequest(TTL=self.requested_ttl)

    def install(self, response: Any, sent: float) -> Lease:
        """Make the lease of a LeaseGrant answer (to a request sent at ``sent``) the live one."""
        if response.error:
            raise BackendUnavailable(f"{self.label}: etcd refused a lease: {response.error}")
        fresh = Lease(int(response.ID), int(response.TTL), sent + int(response.TTL))
        with self._lock:
            self._lease = fresh
        return fresh

    def live(self) -> Lease | None:
        """The lease in use, when it is still alive (no request)."""
        with self._lock:
            lease = self._lease
        return lease if lease is not None and self.check(lease) is None else None

    def current(self) -> Lease | None:
        with self._lock:
            return self._lease

    def bind(self, lease: Lease, grant: Grant) -> bool:
        """Attach ``grant`` to ``lease`` so it is marked lost with it; False if the
        lease is already gone."""
        with self._lock:
            if lease.dead is not None:
                return False
            lease.grants.add(grant)
            return True

    def unbind(self, lease: Lease, grant: Grant) -> None:
        with self._lock:
            lease.grants.discard(grant)

    def take_slot(self, lease: Lease) -> int:
        """A number for a contender's key name, unique among this lease's live keys.

        Names are reused once their key is known to be deleted, so a long-lived backend
        keeps a handful of key names instead of leaving a new deleted key in etcd's
        index for every acquisition (ranges over a lock's queue scan those until etcd
        compacts). A key that could not be deleted keeps its number forever."""
        with self._lock:
            if lease.free_slots:
                slot = heapq.heappop(lease.free_slots)
            else:
                slot = lease.next_slot
                lease.next_slot += 1
            lease.slots.add(slot)
            return slot

    def free_slot(self, lease: Lease, slot: int) -> None:
        with self._lock:
            if slot in lease.slots:  # freed once only: a number is never handed out twice
                lease.slots.remove(slot)
                heapq.heappush(lease.free_slots, slot)

    def check(self, lease: Lease) -> str | None:
        """Why ``lease`` is gone, or None. Declares it lost when no keepalive has been
        confirmed for a whole TTL (a local clock check, no request)."""
        if lease.dead is None and time.monotonic() >= lease.confirmed_until:
            self.lose(lease, f"lease expired: etcd confirmed no keepalive for {lease.ttl} s")
        return lease.dead

    def lose(self, lease: Lease, reason: str) -> None:
        """Record that ``lease`` is gone: mark its grants lost, wake its waiters, and
        revoke it in the background (in case only we consider it gone)."""
        with self._lock:
            if lease.dead is not None:
                return
            lease.dead = reason
            if self._lease is lease:
                self._lease = None
            grants = list(lease.grants)
            lease.grants.clear()
            wakers = list(self._wakers.pop(lease.id, ()))
        _log.warning("%s: lease %x lost (%s); %d grant(s) lost", self.label, lease.id, reason, len(grants))
        self._cleanup.put(RevokeLease(lease.id))
        for grant in grants:
            grant.mark_lost(reason)
        for wake in wakers:
            wake()

    def renew(self, lease: Lease) -> None:
        """One keepalive now. Raises LockLost if etcd no longer has the lease."""
        if self.check(lease) is not None:
            raise LockLost(f"lease {lease.id:x} is gone: {lease.dead}")
        sent = time.monotonic()
        ttl = self.conn.keepalive(lease.id)
        self.confirm(lease, sent, ttl)
        if lease.dead is not None:
            raise LockLost(f"lease {lease.id:x} is gone: {lease.dead}")

    def confirm(self, lease: Lease, sent: float, ttl: int) -> None:
        """A keepalive sent at ``sent`` was answered with ``ttl`` (<= 0: the lease is gone)."""
        if ttl > 0:
            lease.confirmed_until = max(lease.confirmed_until, sent + ttl)
        else:
            self.vanished(lease, sent)

    def vanished(self, lease: Lease, asked: float) -> None:
        """etcd said at ``asked`` that it no longer has ``lease``: revoked if that was
        while we still counted on it (someone revoked it), expired otherwise."""
        self.lose(lease, "lease revoked" if asked < lease.confirmed_until else "lease expired")

    # -- waiters and leftovers -----------------------------------------------------------

    def add_waker(self, lease: Lease, wake: Callable[[], object]) -> bool:
        """Call ``wake()`` when ``lease`` is lost or the session closes; False (and no
        registration) if that already happened."""
        with self._lock:
            if lease.dead is not None or self._stop.is_set():
                return False
            self._wakers.setdefault(lease.id, set()).add(wake)
            return True

    def remove_waker(self, lease: Lease, wake: Callable[[], object]) -> None:
        with self._lock:
            self._wakers.get(lease.id, set()).discard(wake)

    def delete_later(self, key: bytes) -> None:
        """Delete ``key`` once etcd answers again: a contender's key we could not
        withdraw must not block the lock while our lease lives on."""
        self._cleanup.put(DeleteKey(key))

    # -- the keepalive thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            lease = self.current()
            if lease is None:
                self._stop.wait(0.5)
                self._drain()
                continue
            if self._stop.wait(self.until_keepalive(lease)):
                return
            if lease.dead is not None:
                continue
            sent = time.monotonic()
            try:
                ttl = self.conn.keepalive(lease.id, budget=max(0.1, lease.confirmed_until - sent))
            except Exception as exc:  # whatever it was, this thread must go on
                if not self.keepalive_failed(lease, exc):
                    self._stop.wait(0.1)
                continue
            self.confirm(lease, sent, ttl)
            self._drain()
            if self.after_keepalive is not None:
                try:
                    self.after_keepalive()
                except Exception:  # etcd unreachable right now: the next round tries again
                    _log.debug("%s: checking held keys failed", self.label, exc_info=True)

    def until_keepalive(self, lease: Lease) -> float:
        """Seconds until ``lease``'s next keepalive is due (every ttl/3)."""
        period = lease.ttl / 3
        return max(0.0, min(period, lease.confirmed_until - lease.ttl + period - time.monotonic()))

    def keepalive_failed(self, lease: Lease, exc: Exception) -> bool:
        """A keepalive of ``lease`` failed with ``exc``; True when that lost the lease
        (no keepalive confirmed for a whole TTL). Logs what is not a mapped error."""
        if not isinstance(exc, FencingCoordError):
            _log.error("%s: keepalive of lease %x failed", self.label, lease.id, exc_info=exc)
        if time.monotonic() >= lease.confirmed_until:
            self.lose(lease, f"lease expired: etcd confirmed no keepalive for {lease.ttl} s ({exc})")
            return True
        return False

    def _drain(self, stop: float | None = None) -> None:
        """Carry out the deletions and revocations that could not be done at the time
        (those left when ``time.monotonic()`` reaches ``stop`` stay for the next time)."""
        for job in self.pending_cleanup():
            budget = self.cleanup_budget(job, stop)
            if budget is None:
                continue
            service, method, request = cleanup_request(job)
            try:
                self.conn.call(service, method, request, budget=budget)
            except Exception as exc:
                self.cleanup_failed(job, exc)

    def cleanup_budget(self, job: Cleanup, stop: float | None) -> float | None:
        """Seconds ``job`` may take (at most 1); None once ``stop`` passed: it is kept
        for the next time."""
        if stop is None:
            return 1.0
        left = stop - time.monotonic()
        if left <= 0:
            self._cleanup.put(job)
            return None
        return min(1.0, left)

    def pending_cleanup(self) -> list[Cleanup]:
        """The deletions and revocations waiting for etcd to answer (taken off the list)."""
        jobs: list[Cleanup] = []
        while True:
            try:
                jobs.append(self._cleanup.get_nowait())
            except queue.Empty:
                return jobs

    def cleanup_failed(self, job: Cleanup, exc: Exception) -> None:
        """``job`` failed with ``exc``: keep it for next time unless it never can succeed."""
        if isinstance(exc, LeaseNotFound):
            return
        if isinstance(exc, ConfigurationError | InvalidArgument):  # will never succeed
            _log.warning("%s: giving up on %r: %s", self.label, job, exc)
            return
        self._cleanup.put(job)  # etcd still unreachable (or closing): next time

    def close(self, budget: float) -> None:
        """Stop the keepalive, wake every waiter, revoke the lease (deleting every key
        bound to it, held or queued); all within ``budget`` seconds."""
        stop = time.monotonic() + budget
        lease = self.shut()
        if self._thread.is_alive():
            self._thread.join(max(0.0, stop - time.monotonic()))
        if lease is not None:
            try:
                self.conn.call("Lease", "LeaseRevoke", etcdrpc.LeaseRevokeRequest(ID=lease.id),
                               budget=max(0.0, stop - time.monotonic()))
            except FencingCoordError as exc:
                self.revoke_failed(lease, exc)
        self._drain(stop)

    def shut(self) -> Lease | None:
        """The first half of closing: no more keepalives, every waiter woken; returns the
        lease to revoke (marked dead), if any."""
        with self._lock:
            self._stop.set()
            lease, self._lease = self._lease, None
            wakers = [w for ws in self._wakers.values() for w in ws]
            self._wakers.clear()
        for wake in wakers:
            wake()
        if lease is not None:
            lease.dead = "session closed"
            lease.grants.clear()
        return lease

    def revoke_failed(self, lease: Lease, exc: FencingCoordError) -> None:
        if not isinstance(exc, LeaseNotFound):
            _log.warning("%s: could not revoke lease %x at close; its keys expire in %d s",
                         self.label, lease.id, lease.ttl)


def cleanup_request(job: Cleanup) -> tuple[str, str, Any]:
    """(service, method, request) that carries ``job`` out."""
    if isinstance(job, RevokeLease):
        return "Lease", "LeaseRevoke", etcdrpc.LeaseRevokeRequest(ID=job.id)
    return "KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=job.key)
