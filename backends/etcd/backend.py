"""The etcd backend: :class:`EtcdBackend`, its options and its semantics."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from fencing_coord.errors import LockLost
from fencing_coord.fairqueue import wait_in_line
from fencing_coord.grant import Grant
from fencing_coord.interface import Capabilities
from fencing_coord.records import Leader, LockState
from fencing_coord.spi import ROOT, ElectionBackend, narrow
from fencing_coord.url import BackendURL, OptionReader

from .connection import Connection, connection_for, readable_file
from .heldkeys import HeldKeys
from .keys import EtcdKeys
from .layout import parse_election_values
from .queue import EtcdGrant, Queues
from .session import Session
from .waitstream import WaitStream
from .wire import prefix_end, range_request

__all__ = ["EtcdBackend"]

_log = logging.getLogger(__name__)

# .election and .watch (candidate records, the leader, observers' watch) are imported by
# the election methods when first called: connect() and a first grant need neither
# (issue 13: startup).


class EtcdBackend(EtcdKeys, ElectionBackend):
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
    election_    what a candidate key holds: ``record`` (identity and value) or  record
    values       ``raw`` (the proclaimed value only, as Go's Election stores it;
                 see :class:`.layout.ElectionValues`)
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
    * A held key deleted out of band (an operator's ``etcdctl del``) is noticed within
      about 0.2 s (one watch stream per backend watches every key held 0.1 s, from the
      revision it was granted at: etcd replays a deletion before) or by ``renew``: the
      grant is marked lost ("lock key deleted"). Revoking the lease breaks every lock of
      a backend at once (noticed by the keepalive within ttl/3, or by the watch).
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
    capabilities = Capabilities(fifo=True, injectable_clock=False, multiprocess=True)

    def __init__(self, conn: Connection, *, ttl: float, namespace: str, identity: str,
                 raw_election_values: bool = False) -> None:
        self._raw_values = raw_election_values
        lease_ttl = max(1, math.ceil(ttl))
        super().__init__(ttl=float(lease_ttl), namespace=namespace, identity=identity)
        self._conn = conn
        self._root = f"{ROOT}/{namespace}/".encode()
        self._session = Session(conn, lease_ttl, conn.label)
        # A grant's key is watched once it has been held a tenth of the ttl, at most 0.1 s
        # (etcd's leases last 1 s or more: 0.1 s): most holds end sooner and cost no watch,
        # and a deletion is still reported well within the ttl / 3 of a keepalive round.
        self._held_keys = HeldKeys(conn, deleted=self._held_key_deleted, check=self._check_held_keys, label=conn.label,
                                   watch_after=min(lease_ttl / 10, 0.1))
        self._session.after_keepalive = self._held_keys.keepalive_round
        try:
            # Connecting is one call: logging in and the lease share the timeout.
            stop = time.monotonic() + conn.timeout
            conn.authenticate()
            lease = self._session.start(budget=max(0.0, stop - time.monotonic()))
        except BaseException:
            self._held_keys.close()
            conn.close()
            raise
        self.ttl = float(lease.ttl)
        #: A silent wait or watch is re-checked at least this often.
        self._recheck_interval = max(2.0 * self.ttl, conn.timeout)
        #: The stream of the waits' watches (opened by the first wait). Made here, not on
        #: first use: two first waits at once must not open two streams.
        self._waits = WaitStream(self._conn)
        self._queues = Queues(self._session, self, self._probe, recheck_interval=self._recheck_interval,
                              waits=self._waits)

    @classmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> EtcdBackend:
        conn, settings = cls.settings(url, options)
        return cls(conn, **settings)

    @staticmethod
    def settings(url: BackendURL, options: dict[str, Any]) -> tuple[Connection, dict[str, Any]]:
        """The connection (not yet opened) and the keyword arguments an etcd URL and
        options mean."""
        reader = OptionReader(url, options)
        common = reader.common()
        ca = reader.get("ca", None, readable_file)
        cert = reader.get("cert", None, readable_file)
        key = reader.get("key", None, readable_file)
        raw = reader.get("election_values", False, parse_election_values)
        reader.finish()
        return connection_for(url, common.timeout, ca, cert, key), {
            "ttl": common.ttl, "namespace": common.namespace, "identity": common.identity,
            "raw_election_values": raw}

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

    # -- the lock SPI ----------------------------------------------------------------------

    def _acquire(self, name: str, deadline: float | None, on_queued: Callable[[], object] | None) -> Grant | None:
        line = self._queues.line(self._lock_prefix(name), name, self.identity.encode(), deadline)
        return self._watched(wait_in_line(line, deadline, on_queued))

    def _watched(self, grant: EtcdGrant | None) -> EtcdGrant | None:
        """Watch a new grant's key until its release (see :mod:`.heldkeys`)."""
        if grant is not None:
            self._held_keys.add(grant)
        return grant

    def _renew(self, grant: Grant) -> None:
        mine = narrow(grant, EtcdGrant)
        lease = mine.place.lease
        try:
            self._session.renew(lease)
        except LockLost:
            mine.mark_lost(lease.dead or "lease lost")
            raise
        self._renewed(mine, [] if lease.dead is not None else self._conn.range(range_request(mine.place.key)))

    def _held_key_deleted(self, grant: EtcdGrant) -> None:
        """From the held keys' watch: ``grant``'s key was deleted (out of band, or with
        its lease). Reported lost as ZooKeeper's node watches do, without a renew. One
        keepalive first tells the two apart: a lease that is gone is reported as such."""
        if grant.released:
            return
        with contextlib.suppress(LockLost):
            self._session.renew(grant.place.lease)
            self._key_deleted(grant)

    def _check_held_keys(self, held: list[EtcdGrant]) -> None:
        """Read the keys of ``held`` (when their watch was re-created) and report those
        deleted while their lease lives as lost. One transaction per 128 keys."""
        for chunk, request in self._held_key_reads(held):
            self._report_deleted(chunk, self._conn.txn(request))

    def _release(self, grant: Grant) -> bool:
        """One delete, never retried once it may have been applied: a retry that found
        the key gone could not tell our first attempt from a loss. True when it deleted
        the key (bound to our live lease, so the lock was held until then); False when
        the key was gone; BackendUnavailable when etcd did not answer (the key is then
        deleted in the background)."""
        mine = narrow(grant, EtcdGrant)
        place = mine.place
        self._held_keys.remove(mine)
        self._session.unbind(place.lease, grant)
        held = self._queues.withdraw(place, idempotent=False)
        return held and place.lease.dead is None

    def _forget(self, grant: Grant) -> None:
        # Known lost: its lease is gone (revoked in the background) or its key was
        # deleted out of band. Nothing to ask etcd.
        mine = narrow(grant, EtcdGrant)
        self._held_keys.remove(mine)
        self._session.unbind(mine.place.lease, grant)

    def _describe(self, name: str) -> LockState:
        return self._state(name, self._queues.members(self._lock_prefix(name)))

    def _names(self) -> list[str]:
        prefix = self._root + b"locks/"
        return self._names_in(self._conn.range(range_request(prefix, prefix_end(prefix), keys_only=True)))

    def _close(self, held: list[Grant]) -> None:
        self._held_keys.close()
        self._waits.close()
        try:
            self._session.close(self._conn.timeout)
        finally:
            self._conn.close()

    # -- the election capability ----------------------------------------------------------

    def _campaign(self, name: str, value: bytes, deadline: float | None,
                  on_queued: Callable[[], object] | None) -> Grant | None:
        from .election import candidate_value

        line = self._queues.line(self._election_prefix(name), name,
                                 candidate_value(self.identity, value, self._raw_values), deadline)
        return self._watched(wait_in_line(line, deadline, on_queued))

    def _proclaim(self, grant: Grant, value: bytes) -> None:
        """Raises LockLost (and marks the term lost) when the leader's key no longer has
        the term's create revision: the term is over, and a successor's key is untouched."""
        from .election import proclaim

        mine = narrow(grant, EtcdGrant)
        if not proclaim(self._conn, mine.place, mine.holder, value, self._raw_values):
            self._key_deleted(mine)

    def _leader(self, name: str) -> Leader | None:
        from .election import read_leader

        return read_leader(self._conn, self._election_prefix(name), self._raw_values)

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        from .watch import PrefixWatch

        watch = PrefixWatch(self._conn, self._election_prefix(name), notify,
                            recheck_interval=self._recheck_interval, closed=lambda: self.closed)
        return watch.start()
