"""Leader election for asyncio: :class:`AsyncElection`, :class:`AsyncTerm`, and
:class:`LeaderStream`, the async iterator of ``observe()``.

The same rules as :mod:`fencing_coord.election` (its argument checks, term state and
observer filter are shared): the oldest candidate leads, a term's token is larger than
every earlier term's, ``proclaim`` keeps the token.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from ..election import LeaderFilter, TermView, campaign_deadline, not_elected
from ..records import Leader
from .signals import LoopSignal, wait_lost

if TYPE_CHECKING:
    from .backend import AsyncElectionBackend

__all__ = ["AsyncElection", "AsyncLeadershipEvent", "AsyncTerm", "LeaderStream"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds before an observer reads the leader again after a failed read.
_RETRY_AFTER_FAILURE = 0.5


class AsyncTerm(TermView):
    """One term of leadership; ``async with term:`` resigns on exit."""

    election: AsyncElection

    async def wait_lost(self, timeout: float | None = None) -> bool:
        """Wait until the term is lost; True if it was within ``timeout`` seconds."""
        return await wait_lost(self.grant, timeout)

    async def proclaim(self, value: bytes) -> None:
        """Advertise ``value`` within this term (same token); LockLost once it is over."""
        await self.election.backend._proclaim(self.grant, self._proclaimable(value))

    async def resign(self) -> bool:
        """End the term; True if it was still held. Idempotent."""
        return await self.election.backend.release(self.grant)

    async def __aenter__(self) -> AsyncTerm:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.resign()


class AsyncLeadershipEvent(asyncio.Event):
    """Set when leadership is lost; ``term`` is the term it belongs to (for its token)."""

    def __init__(self, term: AsyncTerm) -> None:
        super().__init__()
        self.term = term


class AsyncElection:
    """The election called ``name`` on an async ``backend`` (``backend.election(name)``)."""

    def __init__(self, backend: AsyncElectionBackend, name: str) -> None:
        self.backend = backend
        self.name = name

    async def campaign(self, timeout: float | None = None, value: bytes = b"", *,
                       on_queued: Callable[[], object] | None = None) -> AsyncTerm:
        """Stand as a candidate; return the :class:`AsyncTerm` once leader. As
        :meth:`Election.campaign`; cancelling the task withdraws the candidacy."""
        seconds, value, deadline = campaign_deadline(timeout, value, on_queued)
        grant = await self.backend._start_term(self.name, value, deadline, on_queued)
        if grant is None:
            raise not_elected(self.name, seconds)
        return AsyncTerm(self, grant)

    async def leader(self) -> Leader | None:
        """The current :class:`Leader`, or None when nobody campaigns. Raises
        :class:`InvalidArgument` once the backend is closed."""
        self.backend._check_open()
        return await self.backend._leader(self.name)

    def observe(self) -> LeaderStream:
        """The leaders, as an async iterator: the current one (or None) first, then every
        change, in order; tokens only increase. ``async with election.observe() as
        leaders: async for leader in leaders: ...`` (or call ``aclose()``) stops it.
        Raises :class:`InvalidArgument` once the backend is closed; a stream whose
        backend closes ends."""
        self.backend._check_open()
        return LeaderStream(self)

    async def run(self, fn: Callable[[AsyncLeadershipEvent], Awaitable[T]], timeout: float | None = None,
                  value: bytes = b"") -> T:
        """Campaign, ``await fn(event)`` while leader, resign when it returns; return its
        result. ``event`` is set when leadership is lost (``event.term.token`` is the
        fencing token); ``fn`` should return promptly once it is."""
        async with await self.campaign(timeout, value) as term:
            event = AsyncLeadershipEvent(term)
            lost = asyncio.ensure_future(term.wait_lost())
            lost.add_done_callback(lambda done: event.set() if not done.cancelled() and done.result() else None)
            try:
                return await fn(event)
            finally:
                lost.cancel()

    def __repr__(self) -> str:
        return f"AsyncElection({self.name!r}, backend={self.backend!r})"


class LeaderStream:
    """``observe()``'s async iterator of leaders (see :meth:`AsyncElection.observe`).

    The backend's watch only signals that something may have changed (from any thread,
    through a :class:`LoopSignal`); the leader is then read by the iterating task
    itself, so a slow consumer never queues up stale readings."""

    def __init__(self, election: AsyncElection) -> None:
        self.election = election
        self._filter = LeaderFilter()
        self._changed: LoopSignal | None = None
        self._unwatch: Callable[[], None] | None = None
        self._finalizer: Callable[[], object] | None = None
        self._stopped = False

    def _start(self) -> LoopSignal:
        changed = self._changed = LoopSignal()
        changed.set()
        self._unwatch = self.election.backend._watch_leader(self.election.name, changed.set)
        self._finalizer = weakref.finalize(self, self._unwatch)  # an abandoned stream stops watching
        return changed

    def __aiter__(self) -> LeaderStream:
        return self

    async def __anext__(self) -> Leader | None:
        changed = self._changed or self._start()
        while not self._stopped:
            await changed.wait()
            changed.clear()
            if self._stopped:
                break
            try:
                leader = await self.election.leader()
            except asyncio.CancelledError:
                changed.set()  # the next __anext__ reads again
                raise
            except Exception:
                if self.election.backend.closed:
                    break  # nothing more to observe (every later read raises "closed")
                _log.exception("reading the leader of %r failed; retrying", self.election.name)
                await asyncio.sleep(_RETRY_AFTER_FAILURE)
                changed.set()
                continue
            if self._filter.news(leader):
                return leader
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop observing; iteration ends. Idempotent."""
        self._stopped = True
        if self._changed is not None:
            self._changed.set()
        if self._finalizer is not None:
            self._finalizer()

    async def __aenter__(self) -> LeaderStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
