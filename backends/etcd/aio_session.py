"""The asyncio session: the backend's lease, granted, kept alive by one background task
and revoked at close, through :class:`.aio_connection.AsyncConnection`.

The lease's state and its rules (when it counts as lost, its grants and waiters, the
key-name slots, the clean-up list) are the blocking :class:`.session.Session`'s, used as
a book here: only the requests are sent differently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from fencing_coord.errors import FencingCoordError, LockLost

from .aio_connection import AsyncConnection
from .session import Lease, RevokeLease, Session, cleanup_request

__all__ = ["AsyncSession"]

_log = logging.getLogger(__name__)


class AsyncSession:
    """One lease per backend, kept alive every ttl/3 by :meth:`start`'s task."""

    def __init__(self, conn: AsyncConnection, book: Session) -> None:
        self.conn = conn
        self.book = book
        self.label = conn.label
        self._granting = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        #: Called from the keepalive task after each confirmed keepalive (never suspends).
        self.after_keepalive: Callable[[], None] | None = None

    async def start(self, budget: float | None = None) -> Lease:
        """Grant the first lease (within ``budget`` seconds) and start the keepalive task."""
        lease = await self.lease(budget)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"fencing-coord-etcd-{self.label}")
        return lease

    async def lease(self, budget: float | None = None) -> Lease:
        """The live lease, granting a new one if the last was lost."""
        lease = self.book.live()
        if lease is not None:
            return lease
        async with self._granting:
            lease = self.book.live()
            if lease is not None:
                return lease
            sent = time.monotonic()
            response = await self.conn.call("Lease", "LeaseGrant", self.book.grant_request(), budget=budget)
            return self.book.install(response, sent)

    async def renew(self, lease: Lease) -> None:
        """One keepalive now. Raises LockLost if etcd no longer has the lease."""
        if self.book.check(lease) is not None:
            raise LockLost(f"lease {lease.id:x} is gone: {lease.dead}")
        sent = time.monotonic()
        self.book.confirm(lease, sent, await self.conn.keepalive(lease.id))
        if lease.dead is not None:
            raise LockLost(f"lease {lease.id:x} is gone: {lease.dead}")

    async def _run(self) -> None:
        book = self.book
        while True:
            lease = book.current()
            if lease is None:
                await asyncio.sleep(0.5)
                await self._drain()
                continue
            await asyncio.sleep(book.until_keepalive(lease))
            if lease.dead is not None:
                continue
            sent = time.monotonic()
            try:
                ttl = await self.conn.keepalive(lease.id, budget=max(0.1, lease.confirmed_until - sent))
            except Exception as exc:  # whatever it was, this task must go on
                if not book.keepalive_failed(lease, exc):
                    await asyncio.sleep(0.1)
                continue
            book.confirm(lease, sent, ttl)
            await self._drain()
            if self.after_keepalive is not None:
                try:
                    self.after_keepalive()
                except Exception:  # whatever it was, this task must go on
                    _log.exception("%s: after the keepalive", self.label)

    async def _drain(self, stop: float | None = None) -> None:
        """As :meth:`Session._drain`: what is left when ``stop`` passes stays listed."""
        for job in self.book.pending_cleanup():
            budget = self.book.cleanup_budget(job, stop)
            if budget is None:
                continue
            service, method, request = cleanup_request(job)
            try:
                await self.conn.call(service, method, request, budget=budget)
            except Exception as exc:
                self.book.cleanup_failed(job, exc)

    async def close(self, budget: float) -> None:
        """Stop the keepalive, wake every waiter, revoke the lease (deleting every key
        bound to it, held or queued); all within ``budget`` seconds."""
        stop = time.monotonic() + budget
        lease = self.book.shut()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if lease is not None:
            service, method, request = cleanup_request(RevokeLease(lease.id))
            try:
                await self.conn.call(service, method, request, budget=max(0.0, stop - time.monotonic()))
            except FencingCoordError as exc:
                self.book.revoke_failed(lease, exc)
        await self._drain(stop)

