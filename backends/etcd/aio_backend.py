"""``etcd://`` for asyncio: :class:`AsyncEtcdBackend`.

The same keys, tokens and semantics as :class:`.backend.EtcdBackend` (see the package
docstring), spoken through ``grpc.aio`` over the same protobuf stubs: one background task
per backend keeps the lease alive, another follows the held keys' watch stream (see
:mod:`.aio_heldkeys`; started by the first grant); a task waiting in ``acquire`` holds a
watch on its predecessor, one of the backend's shared stream of the waits (see
:mod:`.aio_waitstream`: two tasks for the stream), and costs no thread; an election
observer is one task on a prefix watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from etcd3 import etcdrpc

from fencing_coord.aio.backend import AsyncElectionBackend
from fencing_coord.errors import FencingCoordError, LockLost
from fencing_coord.fairqueue import await_in_line
from fencing_coord.grant import Grant
from fencing_coord.records import Leader, LockState
from fencing_coord.spi import ROOT, narrow
from fencing_coord.url import BackendURL

from .aio_connection import AsyncConnection
from .aio_heldkeys import AsyncHeldKeys
from .aio_queue import AsyncEtcdQueue, delete_key
from .aio_session import AsyncSession
from .aio_waitstream import AsyncWaitStream
from .backend import EtcdBackend
from .connection import Connection
from .election import candidate_value, leader_of, leader_request, proclaim_request
from .keys import EtcdKeys
from .queue import EtcdGrant, Queues
from .session import Session
from .wire import LeaseNotFound, prefix_end, range_request, status_code

__all__ = ["AsyncEtcdBackend"]

_log = logging.getLogger(__name__)


class AsyncEtcdBackend(EtcdKeys, AsyncElectionBackend):
    """Locks and elections on etcd v3 for asyncio; URL and options as :class:`EtcdBackend`."""

    schemes = ("etcd", "etcds")
    capabilities = EtcdBackend.capabilities
    _release_runs_to_end = True  # its one delete is carried through cancellations, without a task

    def __init__(self, settings: Connection, *, ttl: float, namespace: str, identity: str,
                 raw_election_values: bool = False) -> None:
        """Not connected yet: use :meth:`open` (or ``fencing_coord.aio.connect``)."""
        self._raw_values = raw_election_values
        lease_ttl = max(1, math.ceil(ttl))
        super().__init__(ttl=float(lease_ttl), namespace=namespace, identity=identity)
        self._conn = AsyncConnection(settings)
        self._root = f"{ROOT}/{namespace}/".encode()
        self._session = Session(settings, lease_ttl, settings.label)  # the lease book; its thread never runs
        self._lease = AsyncSession(self._conn, self._session)
        self._held_keys = AsyncHeldKeys(self._conn, deleted=self._held_key_deleted, check=self._check_held_keys,
                                        label=settings.label, watch_after=min(lease_ttl / 10, 0.1))
        self._lease.after_keepalive = self._held_keys.keepalive_round
        self._recheck_interval = max(2.0 * self.ttl, settings.timeout)
        self._queues = Queues(self._session, self, self._probe, recheck_interval=self._recheck_interval,
                              waits=None)
        #: The stream that carries the waits' watches (opened by the first wait).
        self._waits = AsyncWaitStream(self._conn)

    @classmethod
    async def open(cls, url: BackendURL, options: dict[str, Any]) -> AsyncEtcdBackend:
        settings, arguments = EtcdBackend.settings(url, options)
        backend = cls(settings, **arguments)
        try:
            # Connecting is one call: logging in and the lease share the timeout.
            stop = time.monotonic() + settings.timeout
            await backend._conn.authenticate()
            lease = await backend._lease.start(budget=max(0.0, stop - time.monotonic()))
        except BaseException:
            await backend._conn.close()
            raise
        backend.ttl = float(lease.ttl)
        return backend

    @property
    def lease_id(self) -> int | None:
        """The etcd lease the backend uses now (None between a loss and the next grant)."""
        lease = self._session.current()
        return None if lease is None else lease.id

    def _line(self, prefix: bytes, name: str, value: bytes, deadline: float | None) -> AsyncEtcdQueue:
        """The driver of one wait until ``deadline`` (its requests end by then)."""
        return AsyncEtcdQueue(self._lease, self._queues.line(prefix, name, value, deadline), self._queues,
                              self._waits)

    # -- the lock SPI ------------------------------------------------------------------------

    async def _acquire(self, name: str, deadline: float | None,
                       on_queued: Callable[[], object] | None) -> Grant | None:
        line = self._line(self._lock_prefix(name), name, self.identity.encode(), deadline)
        return self._watched(await await_in_line(line, deadline, on_queued))

    def _watched(self, grant: EtcdGrant | None) -> EtcdGrant | None:
        """Watch a new grant's key until its release (see :mod:`.aio_heldkeys`)."""
        if grant is not None:
            self._held_keys.add(grant)
        return grant

    async def _renew(self, grant: Grant) -> None:
        mine = narrow(grant, EtcdGrant)
        lease = mine.place.lease
        try:
            await self._lease.renew(lease)
        except LockLost:
            mine.mark_lost(lease.dead or "lease lost")
            raise
        self._renewed(mine, [] if lease.dead is not None else await self._conn.range(range_request(mine.place.key)))

    async def _held_key_deleted(self, grant: EtcdGrant) -> None:
        """From the held keys' watch: ``grant``'s key was deleted. One keepalive first
        tells an out-of-band delete (the grant is lost: "key deleted") from a lease that
        is gone (reported as such), as :meth:`EtcdBackend._held_key_deleted`."""
        if grant.released:
            return
        with contextlib.suppress(LockLost):
            await self._lease.renew(grant.place.lease)
            self._key_deleted(grant)

    async def _check_held_keys(self, held: list[EtcdGrant]) -> None:
        """Read the keys of ``held`` (when their watch was re-created) and report those
        deleted while their lease lives as lost. One transaction per 128 keys."""
        for chunk, request in self._held_key_reads(held):
            self._report_deleted(chunk, await self._conn.txn(request))

    async def _release(self, grant: Grant) -> bool:
        """One delete, never retried once it may have been applied (see
        EtcdBackend._release): True when it deleted our key, False when it was gone,
        BackendUnavailable when etcd did not answer (deleted in the background)."""
        mine = narrow(grant, EtcdGrant)
        place = mine.place
        self._held_keys.remove(mine)
        self._session.unbind(place.lease, grant)
        held = await delete_key(self._lease, place, None, idempotent=False, to_the_end=True)
        return held and place.lease.dead is None

    def _forget(self, grant: Grant) -> None:
        # Known lost: its lease is gone or its key was deleted. Nothing to ask etcd.
        mine = narrow(grant, EtcdGrant)
        self._held_keys.remove(mine)
        self._session.unbind(mine.place.lease, grant)

    async def _describe(self, name: str) -> LockState:
        prefix = self._lock_prefix(name)
        return self._state(name, await self._conn.range(range_request(prefix, prefix_end(prefix), by_create=True)))

    async def _names(self) -> list[str]:
        prefix = self._root + b"locks/"
        return self._names_in(await self._conn.range(range_request(prefix, prefix_end(prefix), keys_only=True)))

    async def _close(self, held: list[Grant]) -> None:
        try:
            await self._waits.close()
            await self._held_keys.close()
            await self._lease.close(self._conn.timeout)
        finally:
            await self._conn.close()

    # -- the election capability ---------------------------------------------------------------

    async def _campaign(self, name: str, value: bytes, deadline: float | None,
                        on_queued: Callable[[], object] | None) -> Grant | None:
        line = self._line(self._election_prefix(name), name, candidate_value(self.identity, value, self._raw_values),
                          deadline)
        return self._watched(await await_in_line(line, deadline, on_queued))

    async def _proclaim(self, grant: Grant, value: bytes) -> None:
        mine = narrow(grant, EtcdGrant)
        try:
            request = proclaim_request(mine.place, mine.holder, value, self._raw_values)
            applied = bool((await self._conn.txn(request)).succeeded)
        except LeaseNotFound:
            applied = False
        if not applied:
            self._key_deleted(mine)

    async def _leader(self, name: str) -> Leader | None:
        return leader_of(await self._conn.range(leader_request(self._election_prefix(name))), self._raw_values)

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        task = asyncio.get_running_loop().create_task(self._follow_prefix(self._election_prefix(name), notify))

        def stop() -> None:
            task.cancel()

        return stop

    async def _follow_prefix(self, prefix: bytes, notify: Callable[[], None]) -> None:
        """Call ``notify()`` on every change under ``prefix`` and each time the watch is
        (re-)established (changes made while it was down are not replayed); a failed
        stream is opened again on the next member, a silent one every recheck interval."""
        create = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(key=prefix,
                                                                                range_end=prefix_end(prefix)))
        pause = 0.05
        while not self.closed:
            try:
                index, call = self._conn.watch()
            except FencingCoordError:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            try:
                await call.write(create)
                async with asyncio.timeout(self._conn.attempt_timeout) as limit:
                    while (response := await call.read()) is not grpc.aio.EOF and not response.canceled:
                        if response.created:
                            limit.reschedule(asyncio.get_running_loop().time() + self._recheck_interval)
                            pause = 0.05
                        notify()
                self._conn.move_on(index)
            except TimeoutError:
                pass  # unconfirmed in time, or silent for a whole recheck interval: open again
            except grpc.RpcError as exc:
                if status_code(exc) != grpc.StatusCode.CANCELLED:
                    self._conn.note_failure(index, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
            finally:
                call.cancel()
        with contextlib.suppress(Exception):
            notify()
