"""The lock contract every backend implements: :class:`LockBackend`.

A backend subclasses :class:`LockBackend` and implements its ``_``-prefixed abstract
methods (the SPI; :mod:`fencing_coord.spi` has the rest of what a backend author uses:
the election capability, the fair-queue driver, typed grants). The public methods here
validate arguments, apply the reentrancy rule and turn a missed deadline into
:class:`LockTimeout`, so every backend behaves the same at the edge and a backend module
holds only what is specific to its service.

Reentrancy rule (the same on every backend): a thread that acquires a name its backend
object already holds *through a grant that thread acquired* gets that same grant back
(same token, hold count + 1) instead of deadlocking behind itself; each ``release``
undoes one acquisition and only the last one gives the lock up. Another thread of the
same backend object is an ordinary contender and waits its turn, so one backend object
can be shared by the threads of a process without them overlapping.

Metrics (:mod:`fencing_coord.observability`) are taken here, the same for every
backend: acquisitions granted (with their latency) and failed (by reason), hold
durations at release, losses (by reason, from ``on_lost``), and
``lease_expired_while_executing``: a release (or the end of a ``lock()`` block) that
finds its grant already lost. Reentrant acquisitions and election terms are not counted.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from .errors import NotSupported
from .frontend import FrontEnd
from .grant import Grant
from .records import Capabilities, LockState
from .url import BackendURL
from .validation import check_name

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from .election import Election

__all__ = ["Capabilities", "Grant", "LockBackend", "LockState"]

_log = logging.getLogger(__name__)


class LockBackend(FrontEnd, ABC):
    """One client session with a coordination service, shared by every lock it holds.

    Obtain one with :func:`fencing_coord.connect`. Thread-safe. Use it as a context
    manager or call :meth:`close`; closing releases every lock still held.
    """

    #: URL schemes this class serves (documentation; registration is by entry point).
    schemes: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[Capabilities] = Capabilities()

    @classmethod
    @abstractmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> LockBackend:
        """Build a backend from a parsed URL and keyword options (which win over the
        query string). Raises :class:`ConfigurationError` for anything unusable."""

    # -- the public contract --------------------------------------------------------

    def acquire(
        self,
        name: str,
        timeout: float | None = None,
        *,
        on_queued: Callable[[], object] | None = None,
    ) -> Grant:
        """Block until ``name`` is granted and return the :class:`Grant`.

        ``timeout`` is seconds (None waits forever, 0 tries once). Waiters are served
        in arrival order. ``on_queued()`` is called once, from this thread, if the
        caller has to wait behind another holder. Raises :class:`LockTimeout` when the
        timeout passes (the caller's place in the queue is withdrawn),
        :class:`BackendUnavailable` when the service cannot be reached.
        """
        ticket = self._ticket(name, timeout, on_queued, threading.current_thread())
        if ticket.reentered is not None:
            return ticket.reentered
        try:
            got = self._granted(ticket, self._acquire(name, ticket.deadline, on_queued))
            assert got is not None  # _granted raises LockTimeout rather than return None here
            got = self._kept(got)
        except Exception as exc:
            self._acquire_failed(ticket, exc)
            raise
        self._acquire_done(ticket, got)
        return got

    def try_acquire(self, name: str) -> Grant | None:
        """Return a :class:`Grant` if ``name`` is free now, else None. Never waits
        behind a holder (it may wait for the service itself to answer)."""
        ticket = self._ticket(name, 0, None, threading.current_thread(), try_once=True)
        if ticket.reentered is not None:
            return ticket.reentered
        try:
            got = self._granted(ticket, self._acquire(name, ticket.deadline, None), try_once=True)
            if got is not None:
                got = self._kept(got)
        except Exception as exc:
            self._acquire_failed(ticket, exc)
            raise
        self._acquire_done(ticket, got)
        return got

    def renew(self, grant: Grant) -> Grant:
        """Extend the lease behind ``grant`` and return it, with the same token.

        Raises :class:`LockLost` when the grant is already lost or released, and
        :class:`InvalidArgument` for a grant this backend object did not issue.
        """
        self._renew(self._check_renewable(grant))
        return grant

    def release(self, grant: Grant) -> bool:
        """Undo one acquisition of ``grant``; give the lock up on the last one.

        Three answers, the same on every backend:

        * True only when the service confirmed that the lock was still held until this
          release gave it up (or, for an inner reentrant hold, the grant is still held);
        * False at once, without a request, for a grant already known lost (its
          ``lost`` is True, the backend's local rule included) or already released;
        * :class:`BackendUnavailable` when the service cannot tell within the
          ``timeout`` option: the grant counts as released all the same, and the
          backend gives its place up in the background once the service answers (or
          the lease/session ends it).

        Raises :class:`InvalidArgument` for a grant this backend object did not issue:
        only the holder may release.
        """
        booked = self._unbook(grant)
        return self._released(grant, self._release(grant)) if booked is None else booked

    @contextmanager
    def lock(self, name: str, timeout: float | None = None) -> Iterator[Grant]:
        """``with backend.lock(name, timeout) as grant:`` acquire, then release on exit
        (even when the block raises)."""
        grant = self.acquire(name, timeout)
        try:
            yield grant
        finally:
            self.release(grant)

    def describe(self, name: str) -> LockState:
        """Return who holds ``name`` (holder identity and token) and who waits, in order."""
        check_name(name)
        self._check_open()
        return self._describe(name)

    def locks(self) -> list[str]:
        """Return the names of the locks in this namespace that are held or waited
        for, sorted. Raises :class:`NotSupported` if the backend cannot list them."""
        self._check_open()
        return sorted(self._names())

    def election(self, name: str) -> Election:
        """Return the :class:`~fencing_coord.election.Election` called ``name``."""
        check_name(name)
        self._check_open()
        from .spi import ElectionBackend

        if not isinstance(self, ElectionBackend):
            raise NotSupported(f"{type(self).__name__} has no leader election")
        from .election import Election

        return Election(self, name)

    def close(self) -> None:
        """Release every lock still held, resign every term, end the session.

        Threads of this backend still waiting in ``acquire`` or ``campaign`` are
        withdrawn from the queue and raise :class:`InvalidArgument` ("closed").
        Idempotent."""
        held = self._close_book()
        if held is None:
            return
        try:
            self._close(held)
        except Exception:
            _log.exception("closing %r failed", self)

    def __enter__(self) -> LockBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the SPI a backend implements ------------------------------------------------

    @abstractmethod
    def _acquire(
        self, name: str, deadline: float | None, on_queued: Callable[[], object] | None
    ) -> Grant | None:
        """Join the queue for ``name`` and wait until first in it; return the grant.

        ``deadline`` is a ``time.monotonic()`` value (None: no limit); once it has
        passed, withdraw from the queue and return None. A deadline already in the
        past means "try once". Call ``on_queued`` once if the caller must wait.
        """

    @abstractmethod
    def _renew(self, grant: Grant) -> None:
        """Refresh the lease behind ``grant``; raise :class:`LockLost` if it is gone."""

    @abstractmethod
    def _release(self, grant: Grant) -> bool:
        """Give up ``grant``'s place. True only when the service confirmed that it was
        still the holder; False when the service says it was not; raise
        :class:`BackendUnavailable` when that cannot be told (a request not answered
        in time, or a retried delete that found nothing: the first attempt may have
        been the one that deleted it), after arranging the deletion in the background."""

    @abstractmethod
    def _describe(self, name: str) -> LockState:
        """Return the holder, token and waiters of ``name``."""

    @abstractmethod
    def _close(self, held: list[Grant]) -> None:
        """Release ``held`` and end the session."""

    def _names(self) -> list[str]:
        """Names of the locks in this namespace with a holder or waiters (optional)."""
        raise NotSupported(f"{type(self).__name__} cannot list its locks")

    # -- helpers for subclasses ------------------------------------------------------

    def _kept(self, grant: Grant) -> Grant:
        """``grant``, unless close() raced with its acquisition: then it is given back."""
        if grant.released:
            self._give_back(grant)
            raise self._closed_meanwhile(grant.name)
        return grant

    def _adopt_term(self, name: str, grant: Grant | None) -> Grant | None:
        """Keep a newly won election term (resigned by :meth:`close`); a term won while
        the backend was being closed is given back and InvalidArgument raised."""
        term = self._book_term(grant)
        if term is not None and term.released:
            self._give_back(term)
            raise self._closed_meanwhile(name, "campaigning")
        return term

    def _give_back(self, grant: Grant) -> None:
        """Release a grant that close() raced with: nobody else would ever release it."""
        try:
            self._release(grant)
        except Exception:
            _log.exception("releasing %r after close failed", grant)
