"""``zookeeper://`` for asyncio: :class:`AsyncZooKeeperBackend`.

The same tree, tokens and semantics as :class:`.backend.ZooKeeperBackend` (see the
package docstring), through kazoo's asynchronous requests bridged to asyncio futures
(:mod:`.aio_session`). kazoo keeps the session alive from its own connection thread and
calls back on its own threads (three in all per backend), and the backend's monitor
thread (:mod:`.monitor`, shared with the blocking backend) reports lost grants and
tidies up: a fixed handful of threads per backend, none per call or per waiter."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from kazoo.exceptions import NoNodeError

from fencing_coord.aio.backend import AsyncElectionBackend
from fencing_coord.errors import BackendUnavailable, LockLost
from fencing_coord.fairqueue import await_in_line
from fencing_coord.grant import Grant
from fencing_coord.records import Leader, LockState
from fencing_coord.spi import decode_candidate, encode_candidate, narrow
from fencing_coord.url import BackendURL

from .aio_queue import AsyncZooKeeperQueue
from .aio_session import AsyncRequests, Deferred, use_loop_results
from .backend import ZooKeeperBackend
from .common import ZooKeeperCommon
from .grant import ZooKeeperGrant
from .kazoo_hooks import run_watches_at_once
from .members import Member
from .names import CANDIDATE_KIND, LEGACY, LOCK_KIND, queue_contenders, queue_order, unsegment
from .queue import ZooKeeperQueue

__all__ = ["AsyncZooKeeperBackend"]

_log = logging.getLogger(__name__)

# How often describe() lists a queue again when a contender leaves while it is read.
_MEMBERS_ATTEMPTS = 10


class AsyncZooKeeperBackend(ZooKeeperCommon, AsyncElectionBackend):
    """Locks and elections on ZooKeeper for asyncio; URL and options as ZooKeeperBackend."""

    schemes = ZooKeeperBackend.schemes
    capabilities = ZooKeeperBackend.capabilities
    _release_runs_to_end = True  # its one delete is carried through cancellations, without a task

    @classmethod
    async def open(cls, url: BackendURL, options: dict[str, Any]) -> AsyncZooKeeperBackend:
        hosts, settings = ZooKeeperBackend.settings(url, options)
        backend = cls.__new__(cls)
        backend._prepare(hosts, **settings)
        await backend._connect()
        backend._started()
        return backend

    async def _connect(self) -> None:
        """Start the session without blocking the loop: kazoo connects on its thread, and
        the first connection's verdict (a TLS mistake is a ConfigurationError, an
        unreachable ensemble BackendUnavailable: see :mod:`.tls`) is awaited on a worker
        thread, once per backend, as the blocking backend does."""
        session = self._session
        use_loop_results(session.client)
        run_watches_at_once(session.client)  # a waiter's wake-up: one hop to the loop, not two
        self._requests = AsyncRequests(session)
        await asyncio.to_thread(session.start)

    def _line(self, kind: str, name: str, parent: str, data: bytes, deadline: float | None) -> AsyncZooKeeperQueue:
        return AsyncZooKeeperQueue(self._requests, ZooKeeperQueue(
            self._monitor, kind, self._window, parent=parent, name=name, holder=self.identity, data=data,
            deadline=deadline))

    # -- the lock SPI -------------------------------------------------------------------------

    async def _acquire(self, name: str, deadline: float | None,
                       on_queued: Callable[[], object] | None) -> Grant | None:
        line = self._line(LOCK_KIND, name, self.lock_path(name), self.identity.encode("utf-8"), deadline)
        return await await_in_line(line, deadline, on_queued)

    async def _renew(self, grant: Grant) -> None:
        mine = narrow(grant, ZooKeeperGrant)
        path = mine.entry.path
        stat = await self._requests.request(f"renew {mine.name!r}", lambda: self._session.client.exists_async(path))
        if stat is None or int(stat.czxid) != mine.entry.czxid:
            raise LockLost(f"{mine!r} is lost: {self._monitor.lost(mine)}")

    async def _release(self, grant: Grant) -> bool:
        """One delete, with the blocking backend's answers (ZooKeeperBackend._release).
        A cancellation of the calling task meanwhile is raised once the delete ended and
        its outcome was booked."""
        delete = self._releasing(grant)
        if delete is None:
            return False
        end = Deferred()
        try:
            await self._requests.request(f"release {delete.grant.name!r}", delete, expected=(NoNodeError,),
                                         to_the_end=end)
        except (NoNodeError, BackendUnavailable) as exc:
            held = self._release_failed(delete, exc)
        else:
            held = True
        finally:
            if end.cancelled is not None:
                raise end.cancelled
        return held

    async def _describe(self, name: str) -> LockState:
        queued = await self._members(self.lock_path(name), LOCK_KIND, None, _MEMBERS_ATTEMPTS)
        if not queued:
            return LockState(name, None, None)
        holder, *waiters = queued
        return LockState(name, holder.identity, holder.czxid, tuple(m.identity for m in waiters))

    async def _names(self) -> list[str]:
        client, base = self._session.client, f"{self._root}/locks"
        try:
            children = await self._requests.request("list locks", lambda: client.get_children_async(base),
                                                    expected=(NoNodeError,))
        except NoNodeError:
            return []
        stats = await asyncio.gather(*(self._requests.request(
            f"stat {base}/{child}", functools.partial(client.exists_async, f"{base}/{child}")) for child in children))
        return [unsegment(child) for child, stat in zip(children, stats, strict=True)
                if stat is not None and int(stat.numChildren) > 0]

    async def _close(self, held: list[Grant]) -> None:
        stop = time.monotonic() + self.timeout  # close is one call: one timeout in all
        self._monitor.stop()
        # Ending the session deletes every ephemeral node of ours in one step; kazoo's
        # stop waits for its connection thread, at most the timeout (see Session.close).
        await asyncio.to_thread(self._session.close, self.timeout)
        await asyncio.to_thread(self._monitor.join, max(0.0, stop - time.monotonic()))

    async def _members(self, parent: str, kind: str, count: int | None, attempts: int | None) -> list[Member]:
        """As :func:`.members._read`: a synced listing, then the data of the contenders
        wanted in one round trip, listed again when one left in between."""
        client = self._session.client

        def listing() -> Any:
            client.sync_async(parent)
            return client.get_children_async(parent)

        tried, found = 0, []
        while attempts is None or tried < attempts:
            tried += 1
            try:
                children = await self._requests.request(f"read the queue of {parent}", listing,
                                                        expected=(NoNodeError,))
            except NoNodeError:
                return []
            wanted = queue_order(queue_contenders(children, kind))[:count]
            reads = await asyncio.gather(*(self._requests.request(
                f"read {parent}/{c.node}", functools.partial(client.get_async, f"{parent}/{c.node}"),
                expected=(NoNodeError,)) for c in wanted), return_exceptions=True)
            found = [Member(c, bytes(read[0]), int(read[1].czxid)) for c, read in zip(wanted, reads, strict=True)
                     if not isinstance(read, BaseException)]
            if len(found) == len(wanted):
                return found
            for read in reads:
                if isinstance(read, BaseException) and not isinstance(read, NoNodeError):
                    raise read
        return found

    # -- the election capability ---------------------------------------------------------------

    async def _campaign(self, name: str, value: bytes, deadline: float | None,
                        on_queued: Callable[[], object] | None) -> Grant | None:
        line = self._line(CANDIDATE_KIND, name, self.election_path(name), encode_candidate(self.identity, value),
                          deadline)
        return await await_in_line(line, deadline, on_queued)

    async def _proclaim(self, grant: Grant, value: bytes) -> None:
        mine = narrow(grant, ZooKeeperGrant)
        path, data = mine.entry.path, encode_candidate(mine.holder, value)
        try:
            await self._requests.request(f"proclaim in {mine.name!r}",
                                         lambda: self._session.client.set_async(path, data), expected=(NoNodeError,))
        except NoNodeError:
            raise LockLost(f"{mine!r} no longer leads: {self._monitor.lost(mine)}") from None

    async def _leader(self, name: str) -> Leader | None:
        parent = self.election_path(name)
        first = await self._members(parent, CANDIDATE_KIND, 1, None)
        if not first:
            return None
        head = first[0]
        if not head.contender.ours and head.contender.flavor != LEGACY:
            return Leader(head.identity, head.data, head.czxid)
        identity, value = decode_candidate(head.data, f"{parent}/{head.contender.node}")
        return Leader(identity, value, head.czxid)
