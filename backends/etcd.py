"""``etcd://`` and ``etcds://``: locks on the etcd v3 API, tokens from etcd's revisions.

Lock layout. Every contender for lock ``NAME`` puts its own key
``/fencing-coord/<namespace>/locks/<NAME>/<lease-hex>-<n>`` (value: its identity), bound
to its backend's lease and never re-put. The key with the lowest create revision holds
the lock; every other contender watches only the key just before its own (its
predecessor) and re-checks when that key is deleted. The fencing token of a grant is the
``ModRevision`` of the holder's key, which equals its ``CreateRevision``: etcd's
revision counter is cluster-wide, persisted and only ever grows, so a later grant (whose
key was necessarily created after the earlier holder's key) always has a larger token,
across clients, reconnects, restarts and leader changes.

Round trips. An uncontended ``acquire`` is one transaction (put the key, read the
queue's two newest keys); ``try_acquire`` is one transaction (put only if the queue is
empty); ``release`` is one delete. A waiter costs its enqueue, one watch stream, and a
look at the queue when woken (plus one while setting up its watch if the queue moved).
Key names are reused per lease once deleted, so a long-lived backend does not leave a
trail of deleted keys in etcd's index (deleted keys stay there until etcd compacts:
run etcd with ``--auto-compaction-retention``, as in any production setup).

Election layout. Leader election is the same fair queue under
``/fencing-coord/<namespace>/elections/<NAME>/<lease-hex>-<n>`` (apart from locks, so a
lock and an election of one name never meet): the oldest candidate leads, every other
candidate watches its predecessor only. A candidate key's value is the identity's
length in decimal ASCII, ``:``, the identity (UTF-8), then the advertised value as raw
bytes: ``11:host:42:abchttp://a:8080`` is identity ``host:42:abc``, value
``http://a:8080``. The term's token is the key's ``CreateRevision``: ``proclaim``
re-puts the key (changing its ``ModRevision``) in a transaction guarded by that
CreateRevision, so a deposed leader can never overwrite a successor's key. Observers
watch the election's prefix and re-read the oldest candidate on every event.

The client library. We speak the etcd v3 gRPC API with the protobuf messages and stubs
of the ``python3-etcd3`` distribution (``etcd3.etcdrpc``), not its high-level client:
that client cannot sort or limit a range inside a transaction, and its watcher fails
with ``NameError`` when its stream ends. Nothing from grpc or etcd3 leaves this module:
their errors are mapped here to :mod:`fencing_coord.errors` and chained.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import etcd3.transactions
import grpc
from etcd3 import etcdrpc

from fencing_coord.config import BackendURL, OptionReader, connect, parse_url
from fencing_coord.election import Leader
from fencing_coord.errors import (
    BackendUnavailable,
    ConfigurationError,
    FencingCoordError,
    InvalidArgument,
    InvalidArgumentType,
    LockLost,
)
from fencing_coord.interface import Capabilities, Grant, LockBackend, LockState
from fencing_coord.stores.base import FencedOutcome, Store

__all__ = ["EtcdBackend", "EtcdStore", "owner_guard"]

_log = logging.getLogger("fencing_coord.etcd")

#: Every key this library writes starts with this.
ROOT = "/fencing-coord"
_DEFAULT_PORT = 2379
# etcd's default --max-txn-ops.
_MAX_TXN_OPS = 128

# gRPC channel settings: reconnect quickly after a member restarts (the default backoff
# grows to two minutes), and notice a dead peer on an idle stream. etcd refuses client
# pings more often than every 5 s (--grpc-keepalive-min-time), so ping every 10 s.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]

# Errors after which the same request may succeed on another member or a moment later.
_RETRY_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
})


def _prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


# -- the edge: requests, responses, errors ---------------------------------------------------


@dataclass(frozen=True)
class _KV:
    """A key-value pair as etcd reports it (no protobuf beyond this module's edge)."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    @staticmethod
    def of(pb: Any) -> _KV:
        return _KV(bytes(pb.key), bytes(pb.value), int(pb.create_revision), int(pb.mod_revision), int(pb.lease))


def _kvs(response_op: Any) -> list[_KV]:
    return [_KV.of(kv) for kv in response_op.response_range.kvs]


def _put(key: bytes, value: bytes, lease: int = 0) -> Any:
    return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value, lease=lease))


def _get(key: bytes, range_end: bytes = b"", *, limit: int = 0, newest_first: bool = False,
         by_create: bool = False, max_create_revision: int = 0, keys_only: bool = False) -> Any:
    request = etcdrpc.RangeRequest(key=key, range_end=range_end, limit=limit, keys_only=keys_only,
                                   max_create_revision=max_create_revision)
    if by_create:
        request.sort_target = etcdrpc.RangeRequest.CREATE
        request.sort_order = etcdrpc.RangeRequest.DESCEND if newest_first else etcdrpc.RangeRequest.ASCEND
    return request


def _range_op(request: Any) -> Any:
    return etcdrpc.RequestOp(request_range=request)


def _compare(key: bytes, target: str, result: str, value: int | bytes, range_end: bytes = b"") -> Any:
    compare = etcdrpc.Compare(key=key, range_end=range_end)
    compare.result = {"==": etcdrpc.Compare.EQUAL, "<": etcdrpc.Compare.LESS}[result]
    if target == "create":
        compare.target, compare.create_revision = etcdrpc.Compare.CREATE, value
    elif target == "mod":
        compare.target, compare.mod_revision = etcdrpc.Compare.MOD, value
    elif target == "version":
        compare.target, compare.version = etcdrpc.Compare.VERSION, value
    else:
        compare.target, compare.value = etcdrpc.Compare.VALUE, value
    return compare


def _txn(compare: Sequence[Any] = (), success: Sequence[Any] = (), failure: Sequence[Any] = ()) -> Any:
    return etcdrpc.TxnRequest(compare=list(compare), success=list(success), failure=list(failure))


class _LeaseNotFound(LockLost):
    """etcd no longer knows the lease (revoked or expired): internal signal only."""


def _details(exc: grpc.RpcError) -> str:
    details = exc.details() if isinstance(exc, grpc.Call) else None
    return str(details or exc)


def _code(exc: grpc.RpcError) -> grpc.StatusCode | None:
    return exc.code() if isinstance(exc, grpc.Call) else None


def _not_applied(exc: grpc.RpcError) -> bool:
    """True when etcd certainly did not apply the request (so even a non-idempotent
    request may be sent again)."""
    text = _details(exc).lower()
    return _code(exc) == grpc.StatusCode.UNAVAILABLE and ("failed to connect" in text or "no leader" in text)


class _Connection:
    """gRPC channels to the cluster's members: one in use at a time, the next one after
    a failure. Authenticates, retries what may be retried within a time budget, and
    maps gRPC errors to fencing_coord errors (chained)."""

    def __init__(self, targets: list[str], *, credentials: grpc.ChannelCredentials | None,
                 user: str | None, password: str | None, timeout: float, label: str) -> None:
        self.targets = targets
        self.timeout = timeout
        # A single attempt may take this long before we give up on it and try again
        # (every request we retry is idempotent): long enough for a slow commit, short
        # enough to leave a paused or leaderless member within the caller's budget.
        self.attempt_timeout = max(1.0, timeout / 2)
        self.label = label
        self._credentials = credentials
        self._user, self._password = user, password
        self._lock = threading.Lock()
        self._channels: dict[int, grpc.Channel] = {}
        self._stubs: dict[tuple[int, str], Any] = {}
        self._current = 0
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._closed = False

    # -- channels ----------------------------------------------------------------------

    def _stub(self, index: int, service: str) -> Any:
        with self._lock:
            if self._closed:
                raise BackendUnavailable(f"the connection to {self.label} is closed")
            stub = self._stubs.get((index, service))
            if stub is None:
                channel = self._channels.get(index)
                if channel is None:
                    target = self.targets[index]
                    if self._credentials is None:
                        channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
                    else:
                        channel = grpc.secure_channel(target, self._credentials, options=_CHANNEL_OPTIONS)
                    self._channels[index] = channel
                stub = getattr(etcdrpc, service + "Stub")(channel)
                self._stubs[(index, service)] = stub
            return stub

    def _failed(self, index: int) -> None:
        """Move on from member ``index`` (if it is still the one in use)."""
        with self._lock:
            if self._current == index:
                self._current = (index + 1) % len(self.targets)

    def note_failure(self, index: int, exc: grpc.RpcError) -> None:
        if _code(exc) in _RETRY_CODES:
            self._failed(index)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels = list(self._channels.values())
            self._channels.clear()
            self._stubs.clear()
        for channel in channels:
            channel.close()

    # -- requests ----------------------------------------------------------------------

    def authenticate(self) -> None:
        """Log in with the URL's user and password (no-op without them)."""
        if self._user is None:
            return
        request = etcdrpc.AuthenticateRequest(name=self._user, password=self._password or "")
        response = self.call("Auth", "Authenticate", request, authenticating=True)
        self._metadata = (("token", str(response.token)),)

    def call(self, service: str, method: str, request: Any, *, budget: float | None = None,
             idempotent: bool = True, authenticating: bool = False) -> Any:
        """Send one unary request; return the response.

        Retries on another member (or the same one after a short pause) while the
        failure is transient and ``budget`` seconds (default: the ``timeout`` option)
        last; a non-``idempotent`` request is retried only when etcd certainly did not
        apply it. Raises :class:`BackendUnavailable` (chained) when the budget runs
        out, :class:`_LeaseNotFound` when etcd does not know the lease, and
        :class:`ConfigurationError` for refused credentials or permissions.
        """

        def invoke(index: int, timeout: float) -> Any:
            rpc = getattr(self._stub(index, service), method)
            return rpc(request, timeout=timeout, metadata=self._metadata)

        return self._retry(invoke, f"{service}.{method}", budget, idempotent, authenticating)

    def keepalive(self, lease_id: int, *, budget: float | None = None) -> int:
        """Refresh lease ``lease_id`` once; return its new TTL (<= 0: etcd no longer
        has it)."""
        request = etcdrpc.LeaseKeepAliveRequest(ID=lease_id)

        def invoke(index: int, timeout: float) -> int:
            # LeaseKeepAlive is a stream; one request, one answer per round is plenty
            # at a period of ttl/3 and keeps no stream state across member failures.
            stub = self._stub(index, "Lease")
            for answer in stub.LeaseKeepAlive(iter([request]), timeout=timeout, metadata=self._metadata):
                return int(answer.TTL)
            raise _StreamEnded("etcd closed the keepalive stream without an answer")

        ttl: int = self._retry(invoke, "LeaseKeepAlive", budget, True, False)
        return ttl

    def _retry(self, invoke: Callable[[int, float], Any], what: str, budget: float | None,
               idempotent: bool, authenticating: bool) -> Any:
        stop = time.monotonic() + (self.timeout if budget is None else budget)
        pause = 0.02
        reauthenticated = False
        while True:
            index = self._current
            attempt = max(0.05, min(stop - time.monotonic(), self.attempt_timeout))
            try:
                return invoke(index, attempt)
            except ValueError as exc:
                if "closed channel" not in str(exc):
                    raise
                # close() ran meanwhile (grpc: "Cannot invoke RPC on closed channel!").
                raise BackendUnavailable(f"{self.label}: the connection is closed") from exc
            except _StreamEnded as exc:
                self._failed(index)
                if time.monotonic() + pause >= stop:
                    raise BackendUnavailable(f"{self.label}: etcd did not answer {what}: {exc}") from exc
            except grpc.RpcError as exc:
                code, text = _code(exc), _details(exc)
                if code == grpc.StatusCode.NOT_FOUND and "lease not found" in text:
                    raise _LeaseNotFound(text) from exc
                if "invalid auth token" in text and not authenticating and not reauthenticated:
                    # Simple tokens expire after a while without requests; log in again.
                    reauthenticated = True
                    self.authenticate()
                    continue
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or (
                    code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
                    and ("auth" in text or "user name" in text)
                ):
                    raise ConfigurationError(
                        f"{self.label}: etcd refused {what} ({text}); check the user, password "
                        "and their permissions on the /fencing-coord/ prefix"
                    ) from exc
                if "too large" in text or "larger than max" in text:
                    raise InvalidArgument(f"{self.label}: etcd refused {what} as too large: {text}") from exc
                if code not in _RETRY_CODES:
                    raise FencingCoordError(f"{self.label}: etcd {what} failed: {code} {text}") from exc
                self.note_failure(index, exc)
                retry = idempotent or _not_applied(exc)
                if not retry or time.monotonic() + pause >= stop:
                    unknown = "" if retry else " (it may have been applied)"
                    raise BackendUnavailable(f"{self.label}: etcd did not answer {what}{unknown}: {text}") from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def txn(self, request: Any, *, budget: float | None = None, idempotent: bool = True) -> Any:
        return self.call("KV", "Txn", request, budget=budget, idempotent=idempotent)

    def range(self, request: Any, *, budget: float | None = None) -> list[_KV]:
        response = self.call("KV", "Range", request, budget=budget)
        return [_KV.of(kv) for kv in response.kvs]

    def watch(self, requests: Iterator[Any]) -> tuple[int, Any]:
        """Open a watch stream on the member in use; return (member index, the call).

        The stream carries ``hasleader`` so that etcd ends it when that member loses
        its leader instead of leaving it silent."""
        index = self._current
        stub = self._stub(index, "Watch")
        return index, stub.Watch(requests, metadata=(*self._metadata, ("hasleader", "true")))


class _StreamEnded(Exception):
    """A keepalive stream closed without an answer."""


# -- the session: one lease, kept alive in the background -------------------------------------


@dataclass(eq=False)
class _Lease:
    id: int
    ttl: int
    #: time.monotonic() before which etcd certainly still has the lease: the send time of
    #: the last confirmed keepalive (or grant) plus the TTL it confirmed.
    confirmed_until: float
    grants: set[Grant] = field(default_factory=set)
    #: Why the lease is gone, once it is.
    dead: str | None = None
    #: Key-name numbers in use by this lease's contenders (see _Session.take_slot).
    slots: set[int] = field(default_factory=set)


class _Session:
    """The backend's lease (etcd's concurrency.Session): granted at connect, kept alive
    every ttl/3 by a daemon thread, replaced by a new one when lost. When it is lost,
    every grant bound to it is marked lost once and every waiter queued with it wakes."""

    def __init__(self, conn: _Connection, ttl: int, label: str) -> None:
        self.conn = conn
        self.requested_ttl = ttl
        self.label = label
        self._lock = threading.Lock()
        self._grant_lock = threading.Lock()  # one LeaseGrant at a time
        self._lease: _Lease | None = None
        self._wakers: dict[int, set[Callable[[], object]]] = {}
        self._cleanup: queue.SimpleQueue[tuple[str, bytes, int]] = queue.SimpleQueue()
        self._stop = threading.Event()
        #: Called from the keepalive thread after each confirmed keepalive.
        self.after_keepalive: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"fencing-coord-etcd-keepalive-{label}", daemon=True)

    def start(self) -> _Lease:
        lease = self.lease()
        self._thread.start()
        return lease

    # -- leases --------------------------------------------------------------------

    def lease(self, budget: float | None = None) -> _Lease:
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
            response = self.conn.call("Lease", "LeaseGrant", etcdrpc.LeaseGrantRequest(TTL=self.requested_ttl),
                                      budget=budget)
            if response.error:
                raise BackendUnavailable(f"{self.label}: etcd refused a lease: {response.error}")
            fresh = _Lease(int(response.ID), int(response.TTL), sent + int(response.TTL))
            with self._lock:
                self._lease = fresh
            return fresh

    def current(self) -> _Lease | None:
        with self._lock:
            return self._lease

    def bind(self, lease: _Lease, grant: Grant) -> bool:
        """Attach ``grant`` to ``lease`` so it is marked lost with it; False if the
        lease is already gone."""
        with self._lock:
            if lease.dead is not None:
                return False
            lease.grants.add(grant)
            return True

    def unbind(self, lease: _Lease, grant: Grant) -> None:
        with self._lock:
            lease.grants.discard(grant)

    def take_slot(self, lease: _Lease) -> int:
        """A number for a contender's key name, unique among this lease's live keys.

        Names are reused once their key is known to be deleted, so a long-lived backend
        keeps a handful of key names instead of leaving a new deleted key in etcd's
        index for every acquisition (ranges over a lock's queue scan those until etcd
        compacts). A key that could not be deleted keeps its number forever."""
        with self._lock:
            slot = 0
            while slot in lease.slots:
                slot += 1
            lease.slots.add(slot)
            return slot

    def free_slot(self, lease: _Lease, slot: int) -> None:
        with self._lock:
            lease.slots.discard(slot)

    def check(self, lease: _Lease) -> str | None:
        """Why ``lease`` is gone, or None. Declares it lost when no keepalive has been
        confirmed for a whole TTL (a local clock check, no request)."""
        if lease.dead is None and time.monotonic() >= lease.confirmed_until:
            self.lose(lease, f"lease expired: etcd confirmed no keepalive for {lease.ttl} s")
        return lease.dead

    def lose(self, lease: _Lease, reason: str) -> None:
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
        self._cleanup.put(("revoke", b"", lease.id))
        for grant in grants:
            grant.mark_lost(reason)
        for wake in wakers:
            wake()

    def renew(self, lease: _Lease) -> None:
        """One keepalive now. Raises LockLost if etcd no longer has the lease."""
        if self.check(lease) is not None:
            raise LockLost(f"lease {lease.id:x} is gone: {lease.dead}")
        sent = time.monotonic()
        ttl = self.conn.keepalive(lease.id)
        self._confirm(lease, sent, ttl)
        if lease.dead is not None:
            raise LockLost(f"lease {lease.id:x} is gone: {lease.dead}")

    def _confirm(self, lease: _Lease, sent: float, ttl: int) -> None:
        if ttl > 0:
            lease.confirmed_until = max(lease.confirmed_until, sent + ttl)
        else:
            self.vanished(lease, sent)

    def vanished(self, lease: _Lease, asked: float) -> None:
        """etcd said at ``asked`` that it no longer has ``lease``: revoked if that was
        while we still counted on it (someone revoked it), expired otherwise."""
        self.lose(lease, "lease revoked" if asked < lease.confirmed_until else "lease expired")

    # -- waiters and leftovers -----------------------------------------------------------

    def add_waker(self, lease: _Lease, wake: Callable[[], object]) -> bool:
        """Call ``wake()`` when ``lease`` is lost or the session closes; False (and no
        registration) if that already happened."""
        with self._lock:
            if lease.dead is not None or self._stop.is_set():
                return False
            self._wakers.setdefault(lease.id, set()).add(wake)
            return True

    def remove_waker(self, lease: _Lease, wake: Callable[[], object]) -> None:
        with self._lock:
            self._wakers.get(lease.id, set()).discard(wake)

    def delete_later(self, key: bytes) -> None:
        """Delete ``key`` once etcd answers again: a contender's key we could not
        withdraw must not block the lock while our lease lives on."""
        self._cleanup.put(("delete", key, 0))

    # -- the keepalive thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            lease = self.current()
            if lease is None:
                self._stop.wait(0.5)
                self._drain()
                continue
            period = lease.ttl / 3
            if self._stop.wait(max(0.0, min(period, lease.confirmed_until - lease.ttl + period - time.monotonic()))):
                return
            if lease.dead is not None:
                continue
            sent = time.monotonic()
            try:
                ttl = self.conn.keepalive(lease.id, budget=max(0.1, lease.confirmed_until - sent))
            except Exception as exc:  # whatever it was, this thread must go on
                if not isinstance(exc, FencingCoordError):
                    _log.exception("%s: keepalive of lease %x failed", self.label, lease.id)
                if time.monotonic() >= lease.confirmed_until:
                    self.lose(lease, f"lease expired: etcd confirmed no keepalive for {lease.ttl} s ({exc})")
                else:
                    self._stop.wait(0.1)
                continue
            self._confirm(lease, sent, ttl)
            self._drain()
            if self.after_keepalive is not None:
                try:
                    self.after_keepalive()
                except Exception:  # etcd unreachable right now: the next round tries again
                    _log.debug("%s: checking held keys failed", self.label, exc_info=True)

    def _drain(self) -> None:
        """Carry out the deletions and revocations that could not be done at the time."""
        retry: list[tuple[str, bytes, int]] = []
        while True:
            try:
                job = self._cleanup.get_nowait()
            except queue.Empty:
                break
            kind, key, number = job
            try:
                if kind == "revoke":
                    self.conn.call("Lease", "LeaseRevoke", etcdrpc.LeaseRevokeRequest(ID=number), budget=1.0)
                else:
                    self.conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=key), budget=1.0)
            except _LeaseNotFound:
                pass
            except (ConfigurationError, InvalidArgument) as exc:  # will never succeed
                _log.warning("%s: giving up on %s %r: %s", self.label, kind, key or number, exc)
            except Exception:  # etcd still unreachable (or closing): next time
                retry.append(job)
        for job in retry:
            self._cleanup.put(job)

    def close(self, budget: float) -> None:
        """Stop the keepalive, wake every waiter, revoke the lease (deleting every key
        bound to it, held or queued)."""
        with self._lock:
            self._stop.set()
            lease, self._lease = self._lease, None
            wakers = [w for ws in self._wakers.values() for w in ws]
            self._wakers.clear()
        for wake in wakers:
            wake()
        if self._thread.is_alive():
            self._thread.join(budget)
        if lease is not None:
            lease.dead = "session closed"
            lease.grants.clear()
            try:
                self.conn.call("Lease", "LeaseRevoke", etcdrpc.LeaseRevokeRequest(ID=lease.id), budget=budget)
            except _LeaseNotFound:
                pass
            except FencingCoordError:
                _log.warning("%s: could not revoke lease %x at close; its keys expire in %d s",
                             self.label, lease.id, lease.ttl)
        self._drain()


# -- the fair queue (of a lock or of an election) -----------------------------------------------


@dataclass(frozen=True)
class _Place:
    """A contender's place in a queue: its key, that key's create revision (the token),
    and the lease the key is bound to."""

    key: bytes
    revision: int
    lease: _Lease
    slot: int

    @property
    def prefix(self) -> bytes:
        """The prefix of the queue this place is in."""
        return self.key[: self.key.rindex(b"/") + 1]


class _Queue:
    """The contenders for one lock (or election) under ``prefix``: first = lowest create
    revision. Each contender waits on its predecessor's deletion only."""

    def __init__(self, backend: EtcdBackend, prefix: bytes) -> None:
        self.backend = backend
        self.prefix = prefix
        self.end = _prefix_end(prefix)
        # Read in the enqueue transaction: our key is the newest, so the second newest
        # is our predecessor.
        self._newest_two = _range_op(_get(prefix, self.end, limit=2, newest_first=True, by_create=True))

    def join(self, value: bytes, deadline: float | None, on_queued: Callable[[], object] | None) -> _Place | None:
        """Enqueue with ``value`` and wait until first; return the place, or None once
        ``deadline`` (time.monotonic) has passed, with the place withdrawn.

        If our key disappears while we wait (our lease expired or was revoked, or the
        key was deleted) we enqueue again, at the back, with the session's fresh lease,
        until the deadline: ``acquire`` keeps its promise to wait for the lock, not for
        one particular place in the queue. A deadline already past means "try once".
        """
        backend = self.backend
        session = backend._session
        notified = on_queued is None

        def queued() -> None:
            nonlocal notified
            if not notified and on_queued is not None:
                notified = True
                on_queued()

        while True:
            backend._check_open()
            lease = session.lease()
            slot = session.take_slot(lease)
            key = self.prefix + f"{lease.id:x}-{slot}".encode()
            asked = time.monotonic()
            try:
                if deadline is not None and asked >= deadline:
                    return self._try_once(key, value, lease, slot)
                place, predecessor, seen = self._enqueue(key, value, lease, slot)
                outcome = "gone" if place is None else self._wait_first(place, predecessor, seen, deadline, queued)
            except _LeaseNotFound:
                session.vanished(lease, asked)  # before our keepalive told us: start over
                continue
            except BaseException:
                # Our key may exist (a put whose answer was lost, a wait cut short): it
                # must not stay queued while our lease lives on, or it would block the
                # lock once first. Delete it now if etcd answers, else in the background.
                # Its slot is not reused.
                try:
                    backend._conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=key), budget=1.0)
                except Exception:
                    session.delete_later(key)
                raise
            if outcome == "first":
                return place
            if outcome == "timeout" or (deadline is not None and time.monotonic() >= deadline):
                return None

    def _wait_first(self, place: _Place, predecessor: _KV | None, seen: int, deadline: float | None,
                    queued: Callable[[], None]) -> Literal["first", "gone", "timeout"]:
        """Wait until ``place`` is first ("first"), is gone or its lease died ("gone":
        enqueue again), or the deadline passed ("timeout", place withdrawn)."""
        session = self.backend._session
        present = True
        while predecessor is not None and present and session.check(place.lease) is None:
            if deadline is not None and time.monotonic() >= deadline:
                self.withdraw(place)
                return "timeout"
            queued()
            self._wait(place, predecessor.key, seen, deadline)
            self.backend._check_open()
            predecessor, seen, present = self._look(place.key, place.revision)
        if present and session.check(place.lease) is None:
            return "first"
        if present:
            # Our lease died while we waited: its key is on its way out; do not leave it
            # queued in the meantime.
            with contextlib.suppress(BackendUnavailable):
                self.withdraw(place)
        else:
            session.free_slot(place.lease, place.slot)
        return "gone"

    def _enqueue(self, key: bytes, value: bytes, lease: _Lease,
                 slot: int) -> tuple[_Place | None, _KV | None, int]:
        """Put our key; return (our place, or None if the key vanished already; our
        predecessor or None; the revision read at)."""
        response = self.backend._conn.txn(_txn(
            [_compare(key, "create", "==", 0)],
            [_put(key, value, lease.id), self._newest_two],
            # A retry of a put that was applied after all: find our key instead. (Only
            # this request can have made it: a slot is reused only once its key is gone.)
            [_range_op(_get(key))],
        ))
        if response.succeeded:
            newest = response.responses[1].response_range.kvs
            revision = int(response.header.revision)
            return _Place(key, revision, lease, slot), (_KV.of(newest[1]) if len(newest) > 1 else None), revision
        mine = _kvs(response.responses[0])
        if mine:
            revision = mine[0].create_revision
            predecessor, seen, present = self._look(key, revision)
            if present:
                return _Place(key, revision, lease, slot), predecessor, seen
        self.backend._session.free_slot(lease, slot)
        return None, None, 0

    def _try_once(self, key: bytes, value: bytes, lease: _Lease, slot: int) -> _Place | None:
        """Put our key only if nobody holds or waits: one transaction, nothing to undo."""
        response = self.backend._conn.txn(_txn(
            [_compare(self.prefix, "version", "==", 0, range_end=self.end)],
            [_put(key, value, lease.id)],
            [_range_op(_get(key))],
        ))
        if response.succeeded:
            return _Place(key, int(response.header.revision), lease, slot)
        mine = _kvs(response.responses[0])
        if mine:
            # An earlier attempt of this request was applied after all, when the queue
            # was empty: our key is first.
            return _Place(key, mine[0].create_revision, lease, slot)
        self.backend._session.free_slot(lease, slot)
        return None

    def _look(self, key: bytes, revision: int) -> tuple[_KV | None, int, bool]:
        """(our predecessor or None, the revision read at, whether our key still exists)."""
        response = self.backend._conn.txn(_txn(success=[
            _range_op(_get(key)),
            _range_op(_get(self.prefix, self.end, limit=1, newest_first=True, by_create=True,
                           max_create_revision=max(1, revision - 1))),
        ]))
        mine = [kv for kv in _kvs(response.responses[0]) if kv.create_revision == revision]
        before = _kvs(response.responses[1])
        return (before[0] if before else None), int(response.header.revision), bool(mine)

    def _wait(self, place: _Place, predecessor: bytes, seen: int, deadline: float | None) -> None:
        """Block until the predecessor or our own key may have been deleted since
        revision ``seen``, our lease is lost, the session closes, or the deadline (or
        a periodic re-check) comes. The caller then looks again."""
        backend = self.backend
        session = backend._session
        requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Watch from "now", not from seen + 1: etcd serves a watch that starts in the
        # past from a catch-up loop that runs every 100 ms, which under contention
        # would add tens of milliseconds to every handoff. What was deleted between
        # ``seen`` and the watch's creation is caught by looking again (below).
        for key in (predecessor, place.key):
            requests.put(etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
                key=key, filters=[etcdrpc.WatchCreateRequest.NOPUT])))

        def stream() -> Iterator[Any]:
            while (request := requests.get()) is not None:
                yield request

        try:
            index, call = backend._conn.watch(stream())
        except BackendUnavailable:
            time.sleep(0.05)
            return
        # Re-check now and then even without an event: a member cut off from the others
        # in a way etcd does not detect could leave the stream silent.
        wait = backend._recheck_interval
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        timer = threading.Timer(wait, call.cancel)
        timer.daemon = True
        started = time.monotonic()
        if not session.add_waker(place.lease, call.cancel):
            call.cancel()
        timer.start()
        created, since = 0, 0
        try:
            for response in call:
                if response.canceled or response.compact_revision or response.events:
                    break
                if response.created:
                    created += 1
                    since = max(since, int(response.header.revision))
                    if created == 2 and since > seen:
                        # Written to since we looked: both watches are in place now,
                        # so one more look cannot miss a deletion.
                        before, _, present = self._look(place.key, place.revision)
                        if not present or before is None or before.key != predecessor:
                            break
        except grpc.RpcError as exc:
            if _code(exc) != grpc.StatusCode.CANCELLED:
                backend._conn.note_failure(index, exc)
                if time.monotonic() - started < 0.05:
                    time.sleep(0.05)  # a member that refuses at once: do not spin
        finally:
            timer.cancel()
            session.remove_waker(place.lease, call.cancel)
            requests.put(None)
            call.cancel()

    def withdraw(self, place: _Place) -> bool:
        """Delete our key; True if it still existed. (A plain delete is exact: nobody
        else puts our key's name, and we reuse it only after this delete.) If etcd
        cannot be reached, the key is deleted later in the background and
        BackendUnavailable is raised."""
        session = self.backend._session
        try:
            response = self.backend._conn.call("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=place.key))
        except BackendUnavailable:
            session.delete_later(place.key)
            raise
        session.free_slot(place.lease, place.slot)
        return int(response.deleted) > 0

    def members(self) -> list[_KV]:
        """Every contender, first (the holder) first."""
        return self.backend._conn.range(_get(self.prefix, self.end, by_create=True))


# -- elections: candidate values and a watch on a queue -------------------------------------


def _candidate_value(identity: str, value: bytes) -> bytes:
    """A candidate key's value: the identity's length, ``:``, identity, value."""
    who = identity.encode()
    return b"%d:%s%s" % (len(who), who, value)


def _leader_of(kv: _KV) -> Leader:
    """The Leader a candidate key stands for (a value not in our encoding is read as
    a bare identity)."""
    length, colon, rest = kv.value.partition(b":")
    if colon and length.isdigit() and int(length) <= len(rest):
        size = int(length)
        return Leader(rest[:size].decode(errors="replace"), rest[size:], kv.create_revision)
    return Leader(kv.value.decode(errors="replace"), b"", kv.create_revision)


class _PrefixWatch:
    """Calls ``notify()`` from a daemon thread whenever a key under ``prefix`` may have
    changed: on every event, and each time the watch is (re-)established, since changes
    made while it was down are not replayed. A stream that fails (its member died or
    lost its leader) is opened again on the next member; a silent one is re-opened
    every re-check interval. Ends with :meth:`stop` or when the backend closes."""

    def __init__(self, backend: EtcdBackend, prefix: bytes, notify: Callable[[], None]) -> None:
        self.backend = backend
        self.create = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
            key=prefix, range_end=_prefix_end(prefix)))
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
        while not self.stopped.is_set() and not self.backend.closed:
            if self._watch():
                pause = 0.05
            else:  # a member that fails at once: do not spin
                self.stopped.wait(pause)
                pause = min(pause * 2, 1.0)

    def _watch(self) -> bool:
        """Follow one watch stream until it ends; False if its member failed (the
        connection then moves on to the next member)."""
        conn = self.backend._conn
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
        timer = _start_timer(conn.attempt_timeout, call.cancel)
        created = False
        try:
            for response in call:
                if response.canceled:
                    break
                if response.created and not created:
                    created = True
                    timer.cancel()
                    timer = _start_timer(self.backend._recheck_interval, call.cancel)
                with self._lock:
                    if self.stopped.is_set():
                        return True
                    self.notify()
        except grpc.RpcError as exc:
            if _code(exc) != grpc.StatusCode.CANCELLED:
                conn.note_failure(index, exc)
                return False
        finally:
            timer.cancel()
            ended.set()
            call.cancel()
            with self._lock:
                self._call = None
        if created or self.stopped.is_set() or self.backend.closed:
            return True
        conn._failed(index)
        return False


def _start_timer(seconds: float, fn: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(seconds, fn)
    timer.daemon = True  # never holds up the interpreter's exit
    timer.start()
    return timer


# -- the backend -----------------------------------------------------------------------------


class EtcdBackend(LockBackend):
    """Locks on etcd v3 with fencing tokens from etcd's revisions.

    URL grammar::

        etcd://[user:password@]host[:port][,host[:port]...][?option=value&...]
        etcds://[user:password@]host[:port][,...]?ca=/path/ca.pem[&cert=/path/c.pem&key=/path/k.pem]

    Hosts default to port 2379; list several members of a cluster and the client moves
    to the next one when the one in use fails. ``user:password`` logs in with etcd's
    authentication (the user needs read/write on ``/fencing-coord/``). ``etcds://``
    speaks TLS: ``ca`` verifies the server (the system's roots when omitted); ``cert``
    and ``key`` (together) present a client certificate.

    ============ =============================================================== =================
    option       meaning                                                         default
    ============ =============================================================== =================
    ttl          lease TTL in seconds; etcd leases are whole seconds, so it is   10
                 rounded up, and etcd raises it to its minimum (2 s with etcd's
                 default heartbeat/election settings). ``backend.ttl`` is the
                 TTL etcd granted.
    namespace    key prefix: ``/fencing-coord/<namespace>/``                      ``default``
    timeout      seconds a call may wait for etcd (retrying on other members)    5
                 before BackendUnavailable; also the connect timeout
    identity     holder identity, stored as the lock key's value                 host:pid:random
    ca           etcds: CA bundle (PEM file) that signed the servers' certs      system roots
    cert, key    etcds: client certificate and its private key (PEM files)       none
    ============ =============================================================== =================

    Semantics (see the module docstring for the key layout):

    * One lease per backend object, granted at connect and kept alive every ttl/3 by a
      background thread. When etcd reports it gone (keepalive TTL 0: "lease revoked" if
      it vanished while we still counted on it, "lease expired" otherwise), or no
      keepalive has been confirmed for a whole TTL, every grant on it is marked lost
      (``on_lost`` fires once) and a new lease is granted for later acquisitions.
    * ``grant.lost`` also compares the time since the last confirmed keepalive with the
      TTL, locally: a process that was paused past its TTL sees ``lost`` as soon as it
      resumes, before any request.
    * ``renew(grant)`` sends one keepalive (it refreshes every grant of the backend) and
      checks the grant's key; LockLost if either is gone.
    * ``acquire(name, timeout)`` bounds the wait for the lock; a request within it that
      cannot reach etcd gives up after the ``timeout`` option with BackendUnavailable
      (the queued key is withdrawn, in the background if need be). ``close()`` wakes the
      backend's waiting threads, which raise InvalidArgument ("... is closed").
    * A waiter whose key vanishes while it waits (its lease expired: etcd issues
      #9921/#11456) enqueues again, at the back, with the new lease, until its deadline.
    * Deleting a held key out of band is noticed by ``renew``, not in the background;
      revoke the lease to break a backend's locks (noticed within ttl/3).
    * ``release`` of a grant that cannot reach etcd raises BackendUnavailable and deletes
      the key in the background once etcd answers; ``close`` revokes the lease, which
      deletes every key of this backend at once.
    * Elections (``backend.election(name)``) are the same queue in their own key space:
      a term is a grant (same lease, same loss rules; ``resign`` = ``release``).
      ``term.proclaim`` is one guarded transaction (LockLost, and the term marked lost,
      once the leader's key is gone); ``leader()`` is one range read; ``observe`` holds
      one watch stream on the election's prefix, re-opened on another member when its
      member fails.
    """

    schemes = ("etcd", "etcds")
    capabilities = Capabilities(fifo=True, injectable_clock=False, elections=True, multiprocess=True)

    def __init__(self, conn: _Connection, *, ttl: float, namespace: str, identity: str) -> None:
        lease_ttl = max(1, math.ceil(ttl))
        super().__init__(ttl=float(lease_ttl), namespace=namespace, identity=identity)
        self._conn = conn
        self._root = f"{ROOT}/{namespace}/".encode()
        self._queues: dict[bytes, _Queue] = {}
        self._session = _Session(conn, lease_ttl, conn.label)
        self._session.after_keepalive = self._check_held_keys
        try:
            conn.authenticate()
            lease = self._session.start()
        except BaseException:
            conn.close()
            raise
        self.ttl = float(lease.ttl)
        #: A silent wait is re-checked at least this often (see _Queue._wait).
        self._recheck_interval = max(2.0 * self.ttl, conn.timeout)

    @classmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> EtcdBackend:
        reader = OptionReader(url, options)
        common = reader.common()
        ca = reader.get("ca", None, _readable_file)
        cert = reader.get("cert", None, _readable_file)
        key = reader.get("key", None, _readable_file)
        reader.finish()
        conn = _connection(url, common.timeout, ca, cert, key)
        return cls(conn, ttl=common.ttl, namespace=common.namespace, identity=common.identity)

    # -- what operators and tests may look at ------------------------------------------------

    @property
    def lease_id(self) -> int | None:
        """The etcd lease the backend uses now (None between a loss and the next grant).
        Revoking it (``etcdctl lease revoke <hex>``) breaks every lock and term of this backend."""
        lease = self._session.current()
        return None if lease is None else lease.id

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The members this backend talks to, as host:port."""
        return tuple(self._conn.targets)

    def lock_prefix(self, name: str) -> str:
        """The etcd key prefix under which ``name``'s contenders queue."""
        return self._lock_prefix(name).decode()

    # -- the lock SPI ----------------------------------------------------------------------

    def _lock_prefix(self, name: str) -> bytes:
        return self._root + b"locks/" + name.encode() + b"/"

    def _queue(self, prefix: bytes) -> _Queue:
        """The queue under ``prefix`` (cached: its requests never change)."""
        found = self._queues.get(prefix)
        if found is None:
            if len(self._queues) >= 1024:
                self._queues.clear()
            found = self._queues[prefix] = _Queue(self, prefix)
        return found

    def _acquire(self, name: str, deadline: float | None, on_queued: Callable[[], object] | None) -> Grant | None:
        return self._enter(self._lock_prefix(name), name, self.identity.encode(), deadline, on_queued)

    def _enter(self, prefix: bytes, name: str, value: bytes, deadline: float | None,
               on_queued: Callable[[], object] | None) -> Grant | None:
        """Queue under ``prefix`` with ``value`` until first; return the grant (bound to
        its lease, token = the key's create revision), or None once ``deadline`` passed."""
        contenders = self._queue(prefix)
        while True:
            place = contenders.join(value, deadline, on_queued)
            if place is None:
                return None
            grant = Grant(name, place.revision, self.identity, owner=self, handle=place, probe=self._probe)
            if self._session.bind(place.lease, grant):
                return grant
            # The lease died between our becoming first and now: that is not a grant.
            contenders.withdraw(place)

    def _probe(self, grant: Grant) -> None:
        place: _Place = grant.handle
        reason = self._session.check(place.lease)
        if reason is not None:
            grant.mark_lost(reason)

    def _renew(self, grant: Grant) -> None:
        place: _Place = grant.handle
        try:
            self._session.renew(place.lease)
        except LockLost:
            grant.mark_lost(place.lease.dead or "lease lost")
            raise
        if place.lease.dead is not None:
            grant.mark_lost(place.lease.dead)
            raise LockLost(f"{grant!r} was lost: {place.lease.dead}")
        if not [kv for kv in self._conn.range(_get(place.key)) if kv.create_revision == place.revision]:
            self._key_deleted(grant)

    def _check_held_keys(self) -> None:
        """From the keepalive thread, every ttl/3: report a grant whose key was deleted
        out of band while its lease lives (an operator's ``etcdctl del``) as lost, as
        ZooKeeper's node watches do, instead of waiting for the holder's next renew.
        One read of every held key per round, only while something is held."""
        with self._held_lock:
            held = [*self._held.values(), *self._terms.values()]
        held = [grant for grant in held if not grant.released and not grant.lost]
        for start in range(0, len(held), _MAX_TXN_OPS):
            chunk = held[start:start + _MAX_TXN_OPS]
            response = self._conn.txn(_txn(success=[_range_op(_get(grant.handle.key)) for grant in chunk]))
            for grant, op in zip(chunk, response.responses, strict=True):
                place: _Place = grant.handle
                if not grant.released and not any(kv.create_revision == place.revision for kv in _kvs(op)):
                    with contextlib.suppress(LockLost):
                        self._key_deleted(grant)

    def _key_deleted(self, grant: Grant) -> None:
        """``grant``'s key is gone while its lease lives (deleted out of band): mark the
        grant lost and raise LockLost. The key's slot stays taken until ``release``, so
        that its delete cannot hit a newer key of the same name."""
        place: _Place = grant.handle
        self._session.unbind(place.lease, grant)
        kind = "lock" if place.prefix.startswith(self._root + b"locks/") else "election"
        grant.mark_lost(f"{kind} key deleted")
        raise LockLost(f"{grant!r} was lost: its key {place.key.decode()} was deleted")

    def _release(self, grant: Grant) -> bool:
        place: _Place = grant.handle
        self._session.unbind(place.lease, grant)
        held = self._queue(place.prefix).withdraw(place)
        return held and place.lease.dead is None

    def _describe(self, name: str) -> LockState:
        members = self._queue(self._lock_prefix(name)).members()
        if not members:
            return LockState(name, None, None)
        head, *waiting = members
        return LockState(name, head.value.decode(errors="replace"), head.create_revision,
                         tuple(kv.value.decode(errors="replace") for kv in waiting))

    def _names(self) -> list[str]:
        prefix = self._root + b"locks/"
        kvs = self._conn.range(_get(prefix, _prefix_end(prefix), keys_only=True))
        return sorted({kv.key[len(prefix):].split(b"/", 1)[0].decode() for kv in kvs})

    # -- the election SPI ------------------------------------------------------------------

    def _election_prefix(self, name: str) -> bytes:
        return self._root + b"elections/" + name.encode() + b"/"

    def _campaign(self, name: str, value: bytes, deadline: float | None,
                  on_queued: Callable[[], object] | None) -> Grant | None:
        return self._enter(self._election_prefix(name), name, _candidate_value(self.identity, value),
                           deadline, on_queued)

    def _proclaim(self, grant: Grant, value: bytes) -> None:
        """One transaction: re-put the leader's key, with its lease, only if the key still
        has the term's create revision. Raises LockLost (and marks the term lost) when
        it does not: the term is over, and a successor's key is never touched."""
        place: _Place = grant.handle
        request = _txn([_compare(place.key, "create", "==", place.revision)],
                       [_put(place.key, _candidate_value(grant.holder, value), place.lease.id)])
        try:
            succeeded = bool(self._conn.txn(request).succeeded)
        except _LeaseNotFound:
            succeeded = False
        if not succeeded:
            self._key_deleted(grant)

    def _leader(self, name: str) -> Leader | None:
        prefix = self._election_prefix(name)
        kvs = self._conn.range(_get(prefix, _prefix_end(prefix), limit=1, by_create=True))
        return _leader_of(kvs[0]) if kvs else None

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        return _PrefixWatch(self, self._election_prefix(name), notify).start()

    def _close(self, held: list[Grant]) -> None:
        try:
            self._session.close(self._conn.timeout)
        finally:
            self._conn.close()


def _readable_file(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise TypeError("expected the path of a PEM file")
    try:
        with open(value, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ValueError(f"cannot read {value!r}: {exc.strerror}") from exc


def _connection(url: BackendURL, timeout: float, ca: bytes | None, cert: bytes | None,
                key: bytes | None) -> _Connection:
    if url.path:
        raise ConfigurationError(
            f"{url.redacted()}: etcd:// takes no path (got /{url.path}); use ?namespace= to separate applications"
        )
    credentials = None
    if url.scheme == "etcds":
        if (cert is None) != (key is None):
            raise ConfigurationError(f"{url.redacted()}: give both cert= and key= for a client certificate, or neither")
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    elif ca is not None or cert is not None or key is not None:
        raise ConfigurationError(f"{url.redacted()}: ca=, cert= and key= need TLS; use etcds://")
    if url.password is not None and url.username is None:
        raise ConfigurationError(f"{url.redacted()}: a password needs a user name (user:password@host)")
    targets = []
    for host, port in url.host_list(_DEFAULT_PORT):
        targets.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    label = url.redacted() or f"{url.scheme}://"
    return _Connection(targets, credentials=credentials, user=url.username,
                       password=url.password if url.username is not None else None, timeout=timeout, label=label)


# -- fencing inside etcd -----------------------------------------------------------------------


def owner_guard(grant: Grant) -> Any:
    """A comparison that holds only while ``grant``'s holder still holds the lock, for
    your own etcd transactions (the etcd Go client's ``Mutex.IsOwner()``). For a term
    of an election, pass ``term.grant``: it holds while that term lasts.

    Returns a ``python3-etcd3`` compare (``etcd3.transactions.Create``: the grant's key
    still exists with the grant's token as its create revision); put it in
    ``client.transaction(compare=[...])``. For raw gRPC, ``.build_message()`` gives the
    ``etcdrpc.Compare``. Raises InvalidArgument for a grant not issued by an
    :class:`EtcdBackend`.
    """
    if not isinstance(grant, Grant):
        raise InvalidArgumentType(f"owner_guard needs a Grant, not {type(grant).__name__}")
    if not isinstance(grant.owner, EtcdBackend) or not isinstance(grant.handle, _Place):
        raise InvalidArgument(f"{grant!r} was not issued by an etcd backend")
    return etcd3.transactions.Create(grant.handle.key) == grant.handle.revision


# Tokens are stored as fixed-width decimal so that etcd's byte-wise value comparison
# orders them as numbers.
_TOKEN_WIDTH = 20


def _token_bytes(token: int) -> bytes:
    if token >= 10**_TOKEN_WIDTH:
        raise InvalidArgument(f"token {token} is too large for EtcdStore (at most {_TOKEN_WIDTH} digits)")
    return str(token).zfill(_TOKEN_WIDTH).encode()


class EtcdStore(Store):
    """A :class:`~fencing_coord.stores.base.Store` kept in etcd: fencing inside the
    coordination service itself. Safe across threads and processes.

    ``EtcdStore(backend)`` shares an :class:`EtcdBackend`'s connection (and namespace);
    ``EtcdStore(url)`` connects its own and closes it in :meth:`close`. Per resource, the
    highest admitted token and the values are etcd keys under
    ``/fencing-coord/<namespace>/resources/<resource>/`` (``token``: 20-digit decimal,
    so that etcd's byte-wise comparison orders tokens as numbers; ``data/<key>``), and
    every fenced operation is one etcd transaction that compares the token key and
    writes both. The first operation on a resource also creates its token key.

    A fenced write that times out is not sent again unless etcd certainly did not apply
    it: BackendUnavailable then says "may have been applied". Values are limited by
    etcd's request size (``--max-request-bytes``, 1.5 MiB by default).
    """

    def __init__(self, backend_or_url: EtcdBackend | str, *, namespace: str | None = None) -> None:
        if isinstance(backend_or_url, str):
            made = connect(backend_or_url)
            if not isinstance(made, EtcdBackend):
                made.close()
                raise ConfigurationError(f"EtcdStore needs an etcd:// URL, not {parse_url(backend_or_url).scheme}://")
            self._backend, self._owned = made, True
        elif isinstance(backend_or_url, EtcdBackend):
            self._backend, self._owned = backend_or_url, False
        else:
            kind = type(backend_or_url).__name__
            raise InvalidArgumentType(f"EtcdStore needs an EtcdBackend or an etcd:// URL, not {kind}")
        self._conn = self._backend._conn
        self._root = f"{ROOT}/{namespace or self._backend.namespace}/resources/".encode()
        #: Resources whose token key this store has seen exist (see _prepare).
        self._ready: set[str] = set()

    def _keys(self, resource: str, key: str | None = None) -> tuple[bytes, bytes]:
        base = self._root + quote(resource, safe="").encode() + b"/"
        return base + b"token", base + b"data/" + (key or "").encode()

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        return self._fenced(resource, key, token, strict, _put(self._keys(resource, key)[1], value))

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        return self._fenced(resource, key, token, strict, _range_op(_get(self._keys(resource, key)[1])))

    def _fenced(self, resource: str, key: str, token: int, strict: bool, operation: Any) -> FencedOutcome:
        token_key, _ = self._keys(resource, key)
        mine = _token_bytes(token)
        # Admitted when highest < token (strict) or highest <= token, i.e. < token + 1.
        # An empty value (no token admitted yet) is below every bound.
        bound = mine if strict else _token_bytes(token + 1)
        request = _txn(
            [_compare(token_key, "value", "<", bound)],
            [_range_op(_get(token_key)), _put(token_key, mine), operation],
            [_range_op(_get(token_key))],
        )
        is_read = operation.WhichOneof("request") == "request_range"
        for _ in range(2):
            if resource not in self._ready:
                self._prepare(token_key)
                self._ready.add(resource)
            response = self._conn.txn(request, idempotent=is_read)
            before = _kvs(response.responses[0])
            if before:
                highest = int(before[0].value) if before[0].value else None
                if not response.succeeded:
                    return FencedOutcome(False, highest)
                return FencedOutcome(True, highest, _read_value(response.responses[2]) if is_read else None)
            self._ready.discard(resource)  # the token key was deleted behind our back
        raise FencingCoordError(f"the token key {token_key.decode()} of resource {resource!r} keeps disappearing")

    def _prepare(self, token_key: bytes) -> None:
        """Create the resource's token key, empty (no token admitted yet), unless it
        exists: etcd cannot compare the value of a missing key, and a second branch
        for "missing" would carry the written value twice in one request."""
        self._conn.txn(_txn([_compare(token_key, "create", "==", 0)], [_put(token_key, b"")]))

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        self._conn.call("KV", "Put", etcdrpc.PutRequest(key=self._keys(resource, key)[1], value=value))

    def plain_read(self, resource: str, key: str) -> bytes | None:
        kvs = self._conn.range(_get(self._keys(resource, key)[1]))
        return kvs[0].value if kvs else None

    def highest_token(self, resource: str) -> int | None:
        kvs = self._conn.range(_get(self._keys(resource)[0]))
        return int(kvs[0].value) if kvs and kvs[0].value else None

    def close(self) -> None:
        if self._owned:
            self._backend.close()


def _read_value(response_op: Any) -> bytes | None:
    kvs = _kvs(response_op)
    return kvs[0].value if kvs else None
