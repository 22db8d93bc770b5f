"""Elections in etcd: the candidate records in keys, reading and proclaiming the leader.

A candidate queues like a lock contender (see :mod:`.queue`), under
``/fencing-coord/<namespace>/elections/<NAME>/``; its key's value is the record of
:func:`fencing_coord.spi.encode_candidate`. The oldest key leads; the term's token is
its create revision, which ``proclaim`` keeps. A candidate of Go's
``concurrency.Election`` (``etcdctl elect``) under the same prefix is in the same queue
(see :mod:`.layout`); its key holds the raw value, and it is named after its lease. With
the ``election_values=raw`` option our keys hold the raw value too.
"""

from __future__ import annotations

import logging
from typing import Any

from fencing_coord.records import Leader
from fencing_coord.spi import decode_candidate, encode_candidate

from .connection import Connection
from .layout import foreign_name, is_go
from .places import Place
from .wire import KV, LeaseNotFound, compare, prefix_end, put, range_request, txn

__all__ = ["candidate_value", "leader_of", "leader_request", "proclaim", "proclaim_request", "read_leader"]

_log = logging.getLogger(__name__)


def candidate_value(identity: str, value: bytes, raw: bool) -> bytes:
    """What a candidate key of ours holds: ``value`` itself when ``raw``, else the
    candidate record of ``identity`` and ``value``."""
    return value if raw else encode_candidate(identity, value)


def read_leader(conn: Connection, prefix: bytes, raw: bool = False) -> Leader | None:
    """The oldest candidate under ``prefix`` (one range read), or None. A Go
    ``concurrency`` candidate (and, when ``raw``, any candidate) is named after its
    lease, with its key's value as the value. Raises BackendUnavailable when a key of
    ours does not hold a candidate record (and not ``raw``)."""
    return leader_of(conn.range(leader_request(prefix)), raw)


def proclaim(conn: Connection, place: Place, identity: str, value: bytes, raw: bool = False) -> bool:
    """Advertise ``value`` on the leader's key at ``place``: one transaction that re-puts
    the key, with its lease, only if it still has the term's create revision (so a
    deposed leader never overwrites a successor's key). False when it no longer has."""
    try:
        return bool(conn.txn(proclaim_request(place, identity, value, raw)).succeeded)
    except LeaseNotFound:
        return False


def leader_request(prefix: bytes) -> Any:
    return range_request(prefix, prefix_end(prefix), limit=1, by_create=True)


def proclaim_request(place: Place, identity: str, value: bytes, raw: bool = False) -> Any:
    return txn([compare(place.key, "create", "==", place.revision)],
               [put(place.key, candidate_value(identity, value, raw), place.lease.id)])


def leader_of(kvs: list[KV], raw: bool = False) -> Leader | None:
    """The leader the answer to :func:`leader_request` names, or None (see
    :func:`read_leader` for ``raw`` and Go candidates)."""
    if not kvs:
        return None
    kv = kvs[0]
    if raw or is_go(kv.key):
        return Leader(foreign_name(kv), kv.value, kv.create_revision)
    identity, value = decode_candidate(kv.value, f"etcd key {kv.key.decode(errors='replace')}")
    return Leader(identity, value, kv.create_revision)
