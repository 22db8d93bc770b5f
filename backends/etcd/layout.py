"""Whose key is it: our contenders' keys and those of etcd's Go ``concurrency`` package
(``concurrency.Mutex``, ``concurrency.Election``, ``etcdctl lock``, ``etcdctl elect``)
in one queue.

Go's Mutex and Election given the prefix ``P`` put the key ``P/<lease-hex>`` and order
every key under ``P/`` by create revision; ours put ``P/<lease-hex>-<slot>`` and do the
same. So both kinds of key live in one queue, each side waits for the other's older keys,
and neither can mistake the other's key for its own (``-`` never occurs in a Go key).
A Go key's value is empty (a lock) or the raw proclaimed value (an election); it holds
no identity, so such a holder is named after its lease: ``etcd-lease:<lease-hex>``.
"""

from __future__ import annotations

import logging
import re

from .wire import KV

__all__ = ["ElectionValues", "foreign_name", "is_go", "parse_election_values"]

_log = logging.getLogger(__name__)

_GO = re.compile(rb"[0-9a-f]+")


def is_go(key: bytes) -> bool:
    """True when ``key``'s last component has the shape of a Go ``concurrency`` key
    (``<lease-hex>``); False for ours (``<lease-hex>-<slot>``) and for anything else
    another program put (which an election read reports as not a candidate record)."""
    return _GO.fullmatch(key.rsplit(b"/", 1)[-1]) is not None


def foreign_name(kv: KV) -> str:
    """How a contender whose key holds no identity is shown: ``etcd-lease:<lease-hex>``
    (the lease its key is bound to; ``etcd-lease:none`` for a key bound to none)."""
    return f"etcd-lease:{kv.lease:x}" if kv.lease else "etcd-lease:none"


class ElectionValues:
    """The ``election_values`` option: what a candidate key holds.

    ``record`` (default): the candidate record of
    :func:`fencing_coord.spi.encode_candidate` (identity and value), so ``leader()``
    tells who leads. ``raw``: the proclaimed value only, byte for byte, so Go's
    ``Election.Observe`` and ``etcdctl elect -l`` see exactly what was proclaimed;
    ``leader().identity`` is then ``etcd-lease:<lease-hex>`` for every candidate. Every
    fencing-coord client of one election must use the same setting."""

    RECORD = "record"
    RAW = "raw"


def parse_election_values(value: object) -> bool:
    """True for ``raw``, False for ``record``; ValueError (a ConfigurationError once
    read through OptionReader) for anything else."""
    if value == ElectionValues.RAW:
        return True
    if value == ElectionValues.RECORD:
        return False
    raise ValueError(f"expected {ElectionValues.RECORD!r} or {ElectionValues.RAW!r}")

