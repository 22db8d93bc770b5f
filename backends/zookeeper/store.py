"""Fenced resources in ZooKeeper: :class:`ZooKeeperStore`, a fence znode per resource
(its highest admitted token) and a znode per key below it (see :mod:`.store_nodes` for
the layout and :mod:`.store_steps` for the transactions)."""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import Any

from fencing_coord.errors import ConfigurationError
from fencing_coord.stores.base import FencedOutcome, Store

from .backend import ZooKeeperBackend
from .session import OutcomeUnknown
from .store_nodes import MAX_VALUE_BYTES, Paths
from .store_requests import LOST, Step, StepRun
from .store_steps import Seen, fenced_steps, highest_steps, plain_read_steps, plain_write_steps

__all__ = ["ZooKeeperStore"]


class ZooKeeperStore(Store):
    """A fenced-resource store in ZooKeeper, sharing a :class:`ZooKeeperBackend`'s session.

    Each resource is a persistent fence znode,
    ``/fencing-coord/<namespace>/resources-v2/<resource>``, holding its highest admitted
    token, with one child znode per key holding the value. A fenced write is one
    ``multi`` transaction: the fence checked at the version read (or set to the new
    token, when it raises the highest) and the key's znode written at the version read.
    A concurrent raise makes it fail as a whole, and the operation decides again on what
    it reads then; writers of an equal token do not conflict with each other, and a write
    costs the same whatever the number of keys. Once the versions are known (remembered
    from earlier operations of this store), a fenced write is one round trip. A fenced
    read confirms the fence and the key in a transaction, so it never acts on a lagging
    follower's copy. Safe across threads and processes.

    After a connection loss during the transaction, the store reads the nodes again and
    recognises its own write by the write id it stored with it. It raises
    :class:`BackendUnavailable` ("outcome unknown": read the value to find out) when no
    connection comes back within the backend's ``timeout``, or when the key was written
    over more than once before it could look. A value may be up to 1 000 000 bytes
    (ZooKeeper's ``jute.maxbuffer`` is about 1 MiB per request); a resource may hold any
    number of them.

    Resources of the layout before (one JSON znode per resource, under
    ``.../resources/``) are moved to this layout on first use, their highest token and
    values included, and a tombstone is left at the old path, which fencing-coord
    versions of the old layout refuse ("does not hold a fencing-coord resource") rather
    than fence against a stale highest token. ``namespace`` defaults to the backend's.
    """

    max_value_size = MAX_VALUE_BYTES

    def __init__(self, backend: ZooKeeperBackend, *, namespace: str | None = None) -> None:
        """Keep resources on ``backend``'s ZooKeeper (its session, chroot and, unless
        given, namespace). The store does not close the backend."""
        if not isinstance(backend, ZooKeeperBackend):
            raise ConfigurationError(f"ZooKeeperStore needs a ZooKeeperBackend, not {type(backend).__name__}")
        self._backend = backend
        self._session = backend._session
        self._paths = Paths.of(backend.chroot, backend.namespace if namespace is None else namespace)
        self._seen = Seen()

    def __repr__(self) -> str:
        return f"ZooKeeperStore({self._paths.base!r})"

    def _run(self, steps: Generator[Step, Any, Any]) -> Any:
        """Carry out ``steps`` on this session: each step's request, its answer sent back."""
        run = StepRun(steps)
        session, client = self._session, self._session.client
        while (step := run.next()) is not None:
            try:
                run.reply = session.request(step.what, functools.partial(step.start, client),
                                            idempotent=step.idempotent)
            except OutcomeUnknown:
                run.reply = LOST
        return run.outcome

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        outcome: FencedOutcome = self._run(fenced_steps(self._paths, resource, key, token, strict, value,
                                                        self._seen))
        return outcome

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        outcome: FencedOutcome = self._run(fenced_steps(self._paths, resource, key, token, strict, None,
                                                        self._seen))
        return outcome

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        self._run(plain_write_steps(self._paths, resource, key, value, self._seen))

    def plain_read(self, resource: str, key: str) -> bytes | None:
        value: bytes | None = self._run(plain_read_steps(self._paths, resource, key))
        return value

    def highest_token(self, resource: str) -> int | None:
        highest: int | None = self._run(highest_steps(self._paths, resource))
        return highest
