"""``memory://NAME`` for asyncio: :class:`AsyncMemoryBackend`.

The same lock tables as the blocking :class:`~.memory.MemoryBackend` (an async and a
blocking client of one ``NAME`` contend with each other), driven without threads: a
waiter's wake-up is an asyncio event any thread may set, and with the default clock one
task per backend renews its leases every ``ttl / 3`` (none with an injected clock, as for
the blocking backend). Every table operation holds the table's mutex for a few
microseconds only, so calling them on the event loop never stalls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fencing_coord.aio.backend import AsyncElectionBackend
from fencing_coord.aio.signals import LoopSignal
from fencing_coord.fairqueue import await_in_line
from fencing_coord.grant import Grant
from fencing_coord.records import Leader, LockState
from fencing_coord.url import BackendURL

from .memory import MemoryBackend, MemoryGrant, _MemoryQueue, _Place
from .memory_options import Clock

__all__ = ["AsyncMemoryBackend"]

_log = logging.getLogger(__name__)


class _AsyncMemoryQueue:
    """The async driver of one wait: the blocking driver's table operations (none of
    which blocks) with a wait that suspends the task instead of a thread."""

    __slots__ = ("line",)

    def __init__(self, line: _MemoryQueue) -> None:
        self.line = line

    async def enqueue(self, exclusive: bool) -> _Place | None:
        return self.line.enqueue(exclusive)

    async def look(self, place: _Place) -> _Place:
        return self.line.look(place)

    async def wait(self, place: _Place, deadline: float | None) -> None:
        wake = place.entry.wake
        assert isinstance(wake, LoopSignal)  # made by this front end's enqueue
        await wake.wait(self.line.wait_for(deadline))
        self.line.woken(place)

    async def withdraw(self, place: _Place) -> bool:
        return self.line.withdraw(place)

    def claim(self, place: _Place) -> MemoryGrant:
        return self.line.claim(place)


class AsyncMemoryBackend(AsyncElectionBackend):
    """In-process reference backend for asyncio; the semantics of :class:`MemoryBackend`."""

    schemes = ("memory",)
    capabilities = MemoryBackend.capabilities

    def __init__(self, table_name: str = "", *, ttl: float = 10.0, namespace: str = "default",
                 identity: str = "memory-client", clock: Clock | None = None) -> None:
        """Made inside a coroutine (with the default clock it starts its renewal task)."""
        super().__init__(ttl=ttl, namespace=namespace, identity=identity)
        self._table = MemoryBackend(table_name, ttl=ttl, namespace=namespace, identity=identity, clock=clock,
                                    front=self)
        self._keepalive: asyncio.Task[None] | None = None
        if clock is None:
            self._keepalive = asyncio.get_running_loop().create_task(self._renew_leases(),
                                                                       name="fencing-coord-memory-keepalive")

    @classmethod
    async def open(cls, url: BackendURL, options: dict[str, Any]) -> AsyncMemoryBackend:
        name, settings = MemoryBackend.settings(url, options)
        return cls(name, **settings)

    def _line(self, kind: str, name: str, value: bytes) -> _AsyncMemoryQueue:
        return _AsyncMemoryQueue(_MemoryQueue(self._table, (kind, self.namespace, name), value, LoopSignal))

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            self._table.renew_leases()

    # -- the lock SPI: the blocking backend's table operations, none of which blocks ---------

    async def _acquire(self, name: str, deadline: float | None,
                       on_queued: Callable[[], object] | None) -> Grant | None:
        return await await_in_line(self._line("lock", name, b""), deadline, on_queued)

    async def _renew(self, grant: Grant) -> None:
        self._table._renew(grant)

    async def _release(self, grant: Grant) -> bool:
        return self._table._release(grant)

    async def _describe(self, name: str) -> LockState:
        return self._table._describe(name)

    async def _names(self) -> list[str]:
        return self._table._names()

    async def _close(self, held: list[Grant]) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        self._table.close()  # wakes this backend's waiters, which then see it closed
        for grant in held:
            self._table._release(grant)

    # -- the election capability --------------------------------------------------------------

    async def _campaign(self, name: str, value: bytes, deadline: float | None,
                        on_queued: Callable[[], object] | None) -> Grant | None:
        return await await_in_line(self._line("election", name, value), deadline, on_queued)

    async def _proclaim(self, grant: Grant, value: bytes) -> None:
        self._table._proclaim(grant, value)

    async def _leader(self, name: str) -> Leader | None:
        return self._table._leader(name)

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        return self._table._watch_leader(name, notify)
