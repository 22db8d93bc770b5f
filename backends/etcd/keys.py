"""What both etcd front ends (:class:`.backend.EtcdBackend` and
:class:`.aio_backend.AsyncEtcdBackend`) share without I/O: where a lock's or election's
keys live, what a lease's death or a key's deletion means for a grant, and how keys
read back become a lock's state or the list of locks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from fencing_coord.errors import LockLost
from fencing_coord.grant import Grant
from fencing_coord.records import LockState
from fencing_coord.spi import narrow

from .layout import foreign_name, is_go
from .places import EtcdGrant
from .session import Session
from .wire import KV, MAX_TXN_OPS, range_kvs, range_op, range_request, txn

__all__ = ["EtcdKeys"]

_log = logging.getLogger(__name__)


class EtcdKeys:
    """Mixin of the etcd backends; they set ``_root`` (``/fencing-coord/<namespace>/``)
    and ``_session`` (the lease book)."""

    _root: bytes
    _session: Session

    def _lock_prefix(self, name: str) -> bytes:
        return self._root + b"locks/" + name.encode() + b"/"

    def _election_prefix(self, name: str) -> bytes:
        return self._root + b"elections/" + name.encode() + b"/"

    def lock_prefix(self, name: str) -> str:
        """The prefix to give etcd's Go ``concurrency.NewMutex`` (or ``etcdctl lock``) so
        that it shares lock ``name`` with us: ``/fencing-coord/<namespace>/locks/<name>``,
        without a trailing ``/`` (Go appends it). Every contender's key is under it + ``/``."""
        return self._lock_prefix(name)[:-1].decode()

    def election_prefix(self, name: str) -> str:
        """The prefix to give Go's ``concurrency.NewElection`` (or ``etcdctl elect``) so
        that it campaigns in election ``name`` with us (no trailing ``/``)."""
        return self._election_prefix(name)[:-1].decode()

    def _probe(self, grant: Grant) -> None:
        lease = narrow(grant, EtcdGrant).place.lease
        reason = self._session.check(lease)
        if reason is not None:
            grant.mark_lost(reason)

    def _key_deleted(self, grant: EtcdGrant) -> None:
        """``grant``'s key is gone while its lease lives (deleted out of band): mark the
        grant lost and raise LockLost. The key's slot stays taken until ``release``, so
        that its delete cannot hit a newer key of the same name."""
        place = grant.place
        self._session.unbind(place.lease, grant)
        kind = "lock" if place.prefix.startswith(self._root + b"locks/") else "election"
        grant.mark_lost(f"{kind} key deleted")
        raise LockLost(f"{grant!r} was lost: its key {place.key.decode()} was deleted")

    def _renewed(self, grant: EtcdGrant, kvs: list[KV]) -> None:
        """After a keepalive: ``kvs``, the grant's key as read now, must still be its key."""
        lease = grant.place.lease
        if lease.dead is not None:
            grant.mark_lost(lease.dead)
            raise LockLost(f"{grant!r} was lost: {lease.dead}")
        if not any(kv.create_revision == grant.place.revision for kv in kvs):
            self._key_deleted(grant)

    @staticmethod
    def _held_key_reads(grants: Sequence[Grant]) -> list[tuple[list[EtcdGrant], Any]]:
        """Transactions reading every held key (at most MAX_TXN_OPS each), per chunk."""
        held = [narrow(grant, EtcdGrant) for grant in grants]
        chunks = [held[start:start + MAX_TXN_OPS] for start in range(0, len(held), MAX_TXN_OPS)]
        return [(chunk, txn(success=[range_op(range_request(g.place.key)) for g in chunk])) for chunk in chunks]

    def _report_deleted(self, chunk: list[EtcdGrant], response: Any) -> None:
        """Mark lost the grants of ``chunk`` whose key the read ``response`` no longer has."""
        for grant, op in zip(chunk, response.responses, strict=True):
            if not grant.released and not any(kv.create_revision == grant.place.revision for kv in range_kvs(op)):
                with contextlib.suppress(LockLost):
                    self._key_deleted(grant)

    @staticmethod
    def _state(name: str, members: list[KV]) -> LockState:
        if not members:
            return LockState(name, None, None)
        head, *waiting = members
        return LockState(name, _holder(head), head.create_revision, tuple(_holder(kv) for kv in waiting))

    def _names_in(self, kvs: list[KV]) -> list[str]:
        prefix = self._root + b"locks/"
        return sorted({kv.key[len(prefix):].split(b"/", 1)[0].decode() for kv in kvs})


def _holder(kv: KV) -> str:
    """Who a lock key belongs to: our contenders store their identity; a Go
    ``concurrency.Mutex`` (``etcdctl lock``) key holds nothing and is named after its lease."""
    return foreign_name(kv) if is_go(kv.key) else kv.value.decode(errors="replace")
