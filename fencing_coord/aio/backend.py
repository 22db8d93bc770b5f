"""The lock contract for asyncio: :class:`AsyncLockBackend`, and the election capability
:class:`AsyncElectionBackend` that a backend with elections subclasses instead.

The same template as :class:`fencing_coord.interface.LockBackend`, sharing its checks,
reentrancy rule and book of grants (:class:`fencing_coord.frontend.FrontEnd`); only the
SPI methods are coroutines. Reentrancy is per asyncio task: a task that acquires a name
it holds through this backend object gets the same grant back; another task is an
ordinary contender (so is a child task, e.g. one of ``asyncio.gather``).

Cancellation rules (every backend, by the fair queue's async runner,
:func:`fencing_coord.fairqueue.await_in_line`):

* cancelling a task waiting in ``acquire``/``campaign`` withdraws its entry from the
  queue (no key or node is left behind) and the next waiter is served;
* a task is never left holding a grant it did not receive: the entry becomes a grant
  and reaches the caller without an await in between, so a cancellation lands either
  before (the entry is withdrawn, which gives the lock up if it was already first) or
  after (the caller has the grant and releases it, e.g. by ``async with``);
* ``asyncio.timeout()`` (or ``wait_for``) around ``acquire`` behaves like ``timeout=``:
  the entry is withdrawn and ``TimeoutError`` raised;
* the withdrawal, and ``release`` called from a cancelled task's ``async with``, run to
  their end even when the task is cancelled again meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from ..errors import NotSupported
from ..fairqueue import complete
from ..frontend import FrontEnd
from ..grant import Grant
from ..interface import Capabilities
from ..records import Leader, LockState
from ..url import BackendURL
from ..validation import check_name

if TYPE_CHECKING:
    from .election import AsyncElection

__all__ = ["AsyncElectionBackend", "AsyncLockBackend"]

_log = logging.getLogger(__name__)


def _task() -> object:
    """The holder context of the async API: the current task."""
    return asyncio.current_task()


class AsyncLockBackend(FrontEnd, ABC):
    """One client session with a coordination service, for asyncio programs.

    Obtain one with ``await fencing_coord.aio.connect(url)``. Every method is a coroutine
    that never blocks the event loop; use one backend object from one event loop. Use it
    as ``async with`` or ``await backend.close()``; closing releases every lock held.
    """

    schemes: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: True when the backend's ``_release`` itself runs to its end through a
    #: cancellation of the calling task and raises that cancellation after: ``release``
    #: then awaits it directly instead of making a task for it (see :func:`complete`).
    _release_runs_to_end: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    async def open(cls, url: BackendURL, options: dict[str, Any]) -> AsyncLockBackend:
        """Build and connect a backend from a parsed URL and keyword options (the same
        options as the blocking backend of the scheme)."""

    # -- the public contract --------------------------------------------------------

    async def acquire(self, name: str, timeout: float | None = None, *,
                      on_queued: Callable[[], object] | None = None) -> Grant:
        """Wait until ``name`` is granted and return the :class:`Grant` (the same
        contract as :meth:`LockBackend.acquire`; ``on_queued()`` is called from the
        event loop). Cancelling the waiting task withdraws it from the queue."""
        ticket = self._ticket(name, timeout, on_queued, _task())
        if ticket.reentered is not None:
            return ticket.reentered
        try:
            got = self._granted(ticket, await self._acquire(name, ticket.deadline, on_queued))
            assert got is not None  # _granted raises LockTimeout rather than return None here
            if got.released:
                await self._give_back(got)
        except Exception as exc:
            self._acquire_failed(ticket, exc)
            raise
        self._acquire_done(ticket, got)
        return got

    async def try_acquire(self, name: str) -> Grant | None:
        """A :class:`Grant` if ``name`` is free now, else None; never waits behind a holder."""
        ticket = self._ticket(name, 0, None, _task(), try_once=True)
        if ticket.reentered is not None:
            return ticket.reentered
        try:
            got = self._granted(ticket, await self._acquire(name, ticket.deadline, None), try_once=True)
            if got is not None and got.released:
                await self._give_back(got)
        except Exception as exc:
            self._acquire_failed(ticket, exc)
            raise
        self._acquire_done(ticket, got)
        return got

    async def renew(self, grant: Grant) -> Grant:
        """Extend the lease behind ``grant``; same token. LockLost once it is gone."""
        await self._renew(self._check_renewable(grant))
        return grant

    async def release(self, grant: Grant) -> bool:
        """Undo one acquisition of ``grant``; give the lock up on the last one. The
        blocking API's three answers: True only when the service confirmed the lock was
        still held; False at once, without a request, for a grant known lost or already
        released; :class:`BackendUnavailable` when the service cannot tell (the grant
        counts as released all the same). Runs to its end even if the calling task is
        cancelled meanwhile (the cancellation is raised after)."""
        booked = self._unbook(grant)
        if booked is not None:
            return booked
        work = self._release(grant)
        return self._released(grant, await (work if self._release_runs_to_end else complete(work)))

    @asynccontextmanager
    async def lock(self, name: str, timeout: float | None = None) -> AsyncIterator[Grant]:
        """``async with backend.lock(name, timeout) as grant:`` acquire, release on exit."""
        grant = await self.acquire(name, timeout)
        try:
            yield grant
        finally:
            await self.release(grant)

    async def describe(self, name: str) -> LockState:
        """Who holds ``name`` (identity and token) and who waits, in order."""
        check_name(name)
        self._check_open()
        return await self._describe(name)

    async def locks(self) -> list[str]:
        """Names of the locks in this namespace that are held or waited for, sorted."""
        self._check_open()
        return sorted(await self._names())

    def election(self, name: str) -> AsyncElection:
        """The :class:`~fencing_coord.aio.AsyncElection` called ``name``."""
        check_name(name)
        self._check_open()
        if not isinstance(self, AsyncElectionBackend):
            raise NotSupported(f"{type(self).__name__} has no leader election")
        from .election import AsyncElection

        return AsyncElection(self, name)

    async def close(self) -> None:
        """Release every lock, resign every term, end the session. Tasks still waiting
        in ``acquire``/``campaign`` are withdrawn and raise InvalidArgument ("closed").
        Idempotent."""
        held = self._close_book()
        if held is None:
            return
        try:
            await complete(self._close(held))
        except Exception:
            _log.exception("closing %r failed", self)

    async def __aenter__(self) -> AsyncLockBackend:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- the SPI a backend implements ------------------------------------------------

    @abstractmethod
    async def _acquire(self, name: str, deadline: float | None,
                       on_queued: Callable[[], object] | None) -> Grant | None:
        """As :meth:`LockBackend._acquire`; run the fair queue with ``await_in_line``."""

    @abstractmethod
    async def _renew(self, grant: Grant) -> None: ...

    @abstractmethod
    async def _release(self, grant: Grant) -> bool:
        """As :meth:`LockBackend._release`: True only when confirmed, False when the
        service says it was not held, BackendUnavailable when it cannot tell."""

    @abstractmethod
    async def _describe(self, name: str) -> LockState: ...

    @abstractmethod
    async def _close(self, held: list[Grant]) -> None: ...

    async def _names(self) -> list[str]:
        raise NotSupported(f"{type(self).__name__} cannot list its locks")

    # -- helpers --------------------------------------------------------------------

    async def _give_back(self, grant: Grant, name: str | None = None) -> NoReturn:
        """``grant`` was released while it was acquired (close() raced with it): give it
        back and raise InvalidArgument ("closed"). Called only then, so that the common
        acquisition awaits no coroutine of this check."""
        try:
            await complete(self._release(grant))
        except Exception:
            _log.exception("releasing %r after close failed", grant)
        raise self._closed_meanwhile(name or grant.name, "being acquired" if name is None else "campaigning")


class AsyncElectionBackend(AsyncLockBackend):
    """An async lock backend with the leader-election capability (the SPI of
    :class:`fencing_coord.spi.ElectionBackend`, with coroutines)."""

    async def _start_term(self, name: str, value: bytes, deadline: float | None,
                          on_queued: Callable[[], object] | None) -> Grant | None:
        self._check_open()
        term = self._book_term(await self._campaign(name, value, deadline, on_queued))
        if term is not None and term.released:
            await self._give_back(term, name)
        return term

    @abstractmethod
    async def _campaign(self, name: str, value: bytes, deadline: float | None,
                        on_queued: Callable[[], object] | None) -> Grant | None: ...

    @abstractmethod
    async def _proclaim(self, grant: Grant, value: bytes) -> None: ...

    @abstractmethod
    async def _leader(self, name: str) -> Leader | None: ...

    @abstractmethod
    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify()`` (from any thread; cheap) whenever election ``name``'s queue
        may have changed; return a function that stops the watch."""
