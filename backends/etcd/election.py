"""Elections in etcd: the candidate records in keys, reading and proclaiming the leader.

A candidate queues like a lock contender (see :mod:`.queue`), under
``/fencing-coord/<namespace>/elections/<NAME>/``; its key's value is the record of
:func:`fencing_coord.spi.encode_candidate`. The oldest key leads; the term's token is
its create revision, which ``proclaim`` keeps.
"""

from __future__ import annotations

import logging
from typing import Any

from fencing_coord.records import Leader
from fencing_coord.spi import decode_candidate, encode_candidate

from .connection import Connection
from .queue import Place
from .wire import KV, LeaseNotFound, compare, prefix_end, put, range_request, txn

__all__ = ["leader_of", "leader_request", "proclaim", "proclaim_request", "read_leader"]

_log = logging.getLogger(__name__)


def read_leader(conn: Connection, prefix: bytes) -> Leader | None:
    """The oldest candidate under ``prefix`` (one range read), or None. Raises
    BackendUnavailable when its key does not hold a candidate record."""
    return leader_of(conn.range(leader_request(prefix)))


def proclaim(conn: Connection, place: Place, identity: str, value: bytes) -> bool:
    """Advertise ``value`` on the leader's key at ``place``: one transaction that re-puts
    the key, with its lease, only if it still has the term's create revision (so a
    deposed leader never overwrites a successor's key). False when it no longer has."""
    try:
        return bool(conn.txn(proclaim_request(place, identity, value)).succeeded)
    except LeaseNotFound:
        return False


def leader_request(prefix: bytes) -> Any:
    return range_request(prefix, prefix_end(prefix), limit=1, by_create=True)


def proclaim_request(place: Place, identity: str, value: bytes) -> Any:
    return txn([compare(place.key, "create", "==", place.revision)],
               [put(place.key, encode_candidate(identity, value), place.lease.id)])


def leader_of(kvs: list[KV]) -> Leader | None:
    """The leader the answer to :func:`leader_request` names, or None."""
    if not kvs:
        return None
    identity, value = decode_candidate(kvs[0].value, f"etcd key {kvs[0].key.decode(errors='replace')}")
    return Leader(identity, value, kvs[0].create_revision)
