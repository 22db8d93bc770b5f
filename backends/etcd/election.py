"""Candidate records of elections in etcd keys."""

from __future__ import annotations

import logging

from fencing_coord.records import Leader

from .wire import KV

__all__ = ["candidate_value", "leader_of"]

_log = logging.getLogger(__name__)


def candidate_value(identity: str, value: bytes) -> bytes:
    """A candidate key's value: the identity's length, ``:``, identity, value."""
    who = identity.encode()
    return b"%d:%s%s" % (len(who), who, value)


def leader_of(kv: KV) -> Leader:
    """The Leader a candidate key stands for (a value not in our encoding is read as
    a bare identity)."""
    length, colon, rest = kv.value.partition(b":")
    if colon and length.isdigit() and int(length) <= len(rest):
        size = int(length)
        return Leader(rest[:size].decode(errors="replace"), rest[size:], kv.create_revision)
    return Leader(kv.value.decode(errors="replace"), b"", kv.create_revision)
