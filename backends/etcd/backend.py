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
from collections.abc import Callable
from typing import Any

from fencing_coord.errors import LockLost
from fencing_coord.interface import Capabilities, Grant, LockBackend, LockState
from fencing_coord.records import Leader
from fencing_coord.spi import ROOT
from fencing_coord.url import BackendURL, OptionReader

from .connection import Connection, connection_for, readable_file
from .election import candidate_value, leader_of
from .queue import Place, Queue
from .session import Session
from .watch import PrefixWatch
from .wire import MAX_TXN_OPS, LeaseNotFound, compare, prefix_end, put, range_kvs, range_op, range_request, txn

__all__ = ["EtcdBackend"]

_log = logging.getLogger(__name__)


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

    def __init__(self, conn: Connection, *, ttl: float, namespace: str, identity: str) -> None:
        lease_ttl = max(1, math.ceil(ttl))
        super().__init__(ttl=float(lease_ttl), namespace=namespace, identity=identity)
        self._conn = conn
        self._root = f"{ROOT}/{namespace}/".encode()
        self._queues: dict[bytes, Queue] = {}
        self._session = Session(conn, lease_ttl, conn.label)
        self._session.after_keepalive = self._check_held_keys
        try:
            conn.authenticate()
            lease = self._session.start()
        except BaseException:
            conn.close()
            raise
        self.ttl = float(lease.ttl)
        #: A silent wait is re-checked at least this often (see Queue._wait).
        self._recheck_interval = max(2.0 * self.ttl, conn.timeout)

    @classmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> EtcdBackend:
        reader = OptionReader(url, options)
        common = reader.common()
        ca = reader.get("ca", None, readable_file)
        cert = reader.get("cert", None, readable_file)
        key = reader.get("key", None, readable_file)
        reader.finish()
        conn = connection_for(url, common.timeout, ca, cert, key)
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

    def _queue(self, prefix: bytes) -> Queue:
        """The queue under ``prefix`` (cached: its requests never change)."""
        found = self._queues.get(prefix)
        if found is None:
            if len(self._queues) >= 1024:
                self._queues.clear()
            found = self._queues[prefix] = Queue(self, prefix)
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
        place: Place = grant.handle
        reason = self._session.check(place.lease)
        if reason is not None:
            grant.mark_lost(reason)

    def _renew(self, grant: Grant) -> None:
        place: Place = grant.handle
        try:
            self._session.renew(place.lease)
        except LockLost:
            grant.mark_lost(place.lease.dead or "lease lost")
            raise
        if place.lease.dead is not None:
            grant.mark_lost(place.lease.dead)
            raise LockLost(f"{grant!r} was lost: {place.lease.dead}")
        if not [kv for kv in self._conn.range(range_request(place.key)) if kv.create_revision == place.revision]:
            self._key_deleted(grant)

    def _check_held_keys(self) -> None:
        """From the keepalive thread, every ttl/3: report a grant whose key was deleted
        out of band while its lease lives (an operator's ``etcdctl del``) as lost, as
        ZooKeeper's node watches do, instead of waiting for the holder's next renew.
        One read of every held key per round, only while something is held."""
        with self._held_lock:
            held = [*self._held.values(), *self._terms.values()]
        held = [grant for grant in held if not grant.released and not grant.lost]
        for start in range(0, len(held), MAX_TXN_OPS):
            chunk = held[start:start + MAX_TXN_OPS]
            response = self._conn.txn(txn(success=[range_op(range_request(grant.handle.key)) for grant in chunk]))
            for grant, op in zip(chunk, response.responses, strict=True):
                place: Place = grant.handle
                if not grant.released and not any(kv.create_revision == place.revision for kv in range_kvs(op)):
                    with contextlib.suppress(LockLost):
                        self._key_deleted(grant)

    def _key_deleted(self, grant: Grant) -> None:
        """``grant``'s key is gone while its lease lives (deleted out of band): mark the
        grant lost and raise LockLost. The key's slot stays taken until ``release``, so
        that its delete cannot hit a newer key of the same name."""
        place: Place = grant.handle
        self._session.unbind(place.lease, grant)
        kind = "lock" if place.prefix.startswith(self._root + b"locks/") else "election"
        grant.mark_lost(f"{kind} key deleted")
        raise LockLost(f"{grant!r} was lost: its key {place.key.decode()} was deleted")

    def _release(self, grant: Grant) -> bool:
        place: Place = grant.handle
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
        kvs = self._conn.range(range_request(prefix, prefix_end(prefix), keys_only=True))
        return sorted({kv.key[len(prefix):].split(b"/", 1)[0].decode() for kv in kvs})

    # -- the election SPI ------------------------------------------------------------------

    def _election_prefix(self, name: str) -> bytes:
        return self._root + b"elections/" + name.encode() + b"/"

    def _campaign(self, name: str, value: bytes, deadline: float | None,
                  on_queued: Callable[[], object] | None) -> Grant | None:
        return self._enter(self._election_prefix(name), name, candidate_value(self.identity, value),
                           deadline, on_queued)

    def _proclaim(self, grant: Grant, value: bytes) -> None:
        """One transaction: re-put the leader's key, with its lease, only if the key still
        has the term's create revision. Raises LockLost (and marks the term lost) when
        it does not: the term is over, and a successor's key is never touched."""
        place: Place = grant.handle
        request = txn([compare(place.key, "create", "==", place.revision)],
                       [put(place.key, candidate_value(grant.holder, value), place.lease.id)])
        try:
            succeeded = bool(self._conn.txn(request).succeeded)
        except LeaseNotFound:
            succeeded = False
        if not succeeded:
            self._key_deleted(grant)

    def _leader(self, name: str) -> Leader | None:
        prefix = self._election_prefix(name)
        kvs = self._conn.range(range_request(prefix, prefix_end(prefix), limit=1, by_create=True))
        return leader_of(kvs[0]) if kvs else None

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        return PrefixWatch(self, self._election_prefix(name), notify).start()

    def _close(self, held: list[Grant]) -> None:
        try:
            self._session.close(self._conn.timeout)
        finally:
            self._conn.close()
