"""fencing-coord for asyncio: the whole contract, natively, on one event loop.

    import fencing_coord as fc

    async with await fc.aio.connect("etcd://127.0.0.1:2379") as backend:
        async with backend.lock("orders", timeout=5) as grant:
            ...  # write with grant.token through an AsyncFencedResource
        term = await backend.election("scheduler").campaign(timeout=5)

Grants are the blocking API's :class:`~fencing_coord.Grant` objects (``token``,
``lost``, ``on_lost``); :func:`wait_lost` awaits a loss. Nothing waits in a thread: a
task waiting in ``acquire`` is suspended on its backend's watch, and each backend keeps
its lease or session alive from one background task (ZooKeeper: kazoo's own connection
thread). The cancellation rules are in :mod:`fencing_coord.aio.backend`.

The blocking and the async front ends are one protocol: the same argument checks,
reentrancy rule (per task here), fair-queue algorithm and store logic.
"""

from __future__ import annotations

from .backend import AsyncElectionBackend, AsyncLockBackend
from .config import AIO_ENTRY_POINT_GROUP, connect
from .election import AsyncElection, AsyncLeadershipEvent, AsyncTerm, LeaderStream
from .gate import AsyncBoundResource, AsyncFencedResource, AsyncStore
from .signals import LoopSignal, wait_lost
from .stores import AsyncMemoryStore, AsyncPostgresStore, AsyncSQLiteStore

__all__ = [
    "AIO_ENTRY_POINT_GROUP",
    "AsyncBoundResource",
    "AsyncElection",
    "AsyncElectionBackend",
    "AsyncFencedResource",
    "AsyncLeadershipEvent",
    "AsyncLockBackend",
    "AsyncMemoryStore",
    "AsyncPostgresStore",
    "AsyncSQLiteStore",
    "AsyncStore",
    "AsyncTerm",
    "LeaderStream",
    "LoopSignal",
    "connect",
    "wait_lost",
]
