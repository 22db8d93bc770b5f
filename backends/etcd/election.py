"""Elections in etcd: the candidate records in keys, reading and proclaiming the leader.

A candidate queues like a lock contender (see :mod:`.queue`), under
``/fencing-coord/<namespace>/elections/<NAME>/``; its key's value is the record of
:func:`fencing_coord.spi.encode_candidate`. The oldest key leads; the term's token is
its create revision, which ``proclaim`` keeps.
"""

from __future__ import annotations

import logging

from fencing_coord.records import Leader
from fencing_coord.spi import decode_candidate, encode_candidate

from .connection import Connection
from .queue import Place
from .wire import KV, LeaseNotFound, compare, prefix_end, put, range_request, txn

__all__ = ["proclaim", "read_leader"]

_log = logging.getLogger(__name__)


def read_leader(conn: Connection, prefix: bytes) -> Leader | None:
    """The oldest candidate under ``prefix`` (one range read), or None. Raises
    BackendUnavailable when its key does not hold a candidate record."""
    kvs = conn.range(range_request(prefix, prefix_end(prefix), limit=1, by_create=True))
    return _leader_of(kvs[0]) if kvs else None


def proclaim(conn: Connection, place: Place, identity: str, value: bytes) -> bool:
    """Advertise ``value`` on the leader's key at ``place``: one transaction that re-puts
    the key, with its lease, only if it still has the term's create revision (so a
    deposed leader never overwrites a successor's key). False when it no longer has."""
    request = txn([compare(place.key, "create", "==", place.revision)],
                  [put(place.key, encode_candidate(identity, value), place.lease.id)])
    try:
        return bool(conn.txn(request).succeeded)
    except LeaseNotFound:
        return False


def _leader_of(kv: KV) -> Leader:
    identity, value = decode_candidate(kv.value, f"etcd key {kv.key.decode(errors='replace')}")
    return Leader(identity, value, kv.create_revision)
