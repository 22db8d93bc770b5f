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
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from . import observability
from .errors import InvalidArgument, InvalidArgumentType, LockLost, LockTimeout, NotSupported
from .grant import Grant
from .observability import Metrics, failure_reason
from .records import Capabilities, LockState
from .url import BackendURL
from .validation import check_name, check_timeout

if TYPE_CHECKING:
    from .election import Election

__all__ = ["Capabilities", "Grant", "LockBackend", "LockState"]

_log = logging.getLogger(__name__)


class LockBackend(ABC):
    """One client session with a coordination service, shared by every lock it holds.

    Obtain one with :func:`fencing_coord.connect`. Thread-safe. Use it as a context
    manager or call :meth:`close`; closing releases every lock still held.
    """

    #: URL schemes this class serves (documentation; registration is by entry point).
    schemes: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, *, ttl: float, namespace: str, identity: str) -> None:
        self.ttl = ttl
        self.namespace = namespace
        self.identity = identity
        self._held: dict[tuple[str, threading.Thread], Grant] = {}
        self._terms: dict[int, Grant] = {}
        self._held_lock = threading.Lock()
        self._closed = False
        #: Where this backend's lock metrics go; None: the process-wide
        #: :func:`~fencing_coord.observability.set_metrics` one, if any.
        self.metrics: Metrics | None = None

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
        check_name(name)
        seconds = check_timeout(timeout)
        if on_queued is not None and not callable(on_queued):
            raise InvalidArgumentType("on_queued must be callable")
        self._check_open()
        reentered = self._reenter(name)
        if reentered is not None:
            return reentered
        metrics = self._metrics()
        started = time.monotonic()
        deadline = None if seconds is None else started + seconds
        try:
            grant = self._acquire(name, deadline, on_queued)
            if grant is None:
                raise LockTimeout(f"lock {name!r} not acquired within {seconds} s")
            grant = self._remember(grant)
        except Exception as exc:
            if metrics is not None:
                metrics.acquire_failed(self.metrics_label, name, failure_reason(exc))
            raise
        if metrics is not None:
            observability.observe_grant(metrics, self.metrics_label, grant, started)
        return grant

    def try_acquire(self, name: str) -> Grant | None:
        """Return a :class:`Grant` if ``name`` is free now, else None. Never waits
        behind a holder (it may wait for the service itself to answer)."""
        check_name(name)
        self._check_open()
        reentered = self._reenter(name)
        if reentered is not None:
            return reentered
        metrics = self._metrics()
        started = time.monotonic()
        try:
            grant = self._acquire(name, started, None)
            if grant is not None:
                grant = self._remember(grant)
        except Exception as exc:
            if metrics is not None:
                metrics.acquire_failed(self.metrics_label, name, failure_reason(exc))
            raise
        if metrics is not None:
            if grant is None:
                metrics.acquire_failed(self.metrics_label, name, "busy")
            else:
                observability.observe_grant(metrics, self.metrics_label, grant, started)
        return grant

    def renew(self, grant: Grant) -> Grant:
        """Extend the lease behind ``grant`` and return it, with the same token.

        Raises :class:`LockLost` when the grant is already lost or released, and
        :class:`InvalidArgument` for a grant this backend object did not issue.
        """
        self._check_own(grant)
        if grant.released:
            raise LockLost(f"{grant!r} was released")
        if grant.lost:
            raise LockLost(f"{grant!r} was lost: {grant.lost_reason}")
        self._renew(grant)
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
        self._check_own(grant)
        # Reading ``lost`` runs the backend's local check (its probe), outside our lock.
        probed_lost = grant.lost
        with self._held_lock:
            if grant.released:
                return False
            known_lost = probed_lost or grant._lost
            if grant._holds > 1 and not known_lost:
                grant._holds -= 1
                return True
            grant.mark_released()
            key = (grant.name, grant._thread)
            if self._held.get(key) is grant:
                del self._held[key]
            self._terms.pop(id(grant), None)
        if known_lost:
            self._forget(grant)
            held = False
        else:
            held = self._release(grant)
        if grant._held_since is not None:
            self._observe_release(grant, lost=not held)
        return held

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
        with self._held_lock:
            if self._closed:
                return
            self._closed = True
            held = list(self._held.values()) + list(self._terms.values())
            self._held.clear()
            self._terms.clear()
        for grant in held:
            grant.mark_released()
            if grant._held_since is not None:
                self._observe_release(grant, lost=grant.lost)
        try:
            self._close(held)
        except Exception:
            _log.exception("closing %r failed", self)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __enter__(self) -> LockBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} identity={self.identity!r} namespace={self.namespace!r}>"

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

    def _forget(self, grant: Grant) -> None:
        """Drop what the backend keeps for ``grant``, released after it was known lost.

        Called instead of :meth:`_release`: no request, no blocking (whatever is left
        on the service goes with the lease/session, or in the background). Optional;
        the default does nothing."""
        return None

    @abstractmethod
    def _describe(self, name: str) -> LockState:
        """Return the holder, token and waiters of ``name``."""

    @abstractmethod
    def _close(self, held: list[Grant]) -> None:
        """Release ``held`` and end the session."""

    def _names(self) -> list[str]:
        """Names of the locks in this namespace with a holder or waiters (optional)."""
        raise NotSupported(f"{type(self).__name__} cannot list its locks")

    # -- metrics --------------------------------------------------------------------------

    @property
    def metrics_label(self) -> str:
        """This backend's ``backend`` label: its first URL scheme (``etcd``, ``memory``)."""
        return self.schemes[0] if self.schemes else type(self).__name__

    def _metrics(self) -> Metrics | None:
        return self.metrics if self.metrics is not None else observability._current

    def _observe_release(self, grant: Grant, *, lost: bool) -> None:
        """Count a grant given up (not for the reentrant releases before the last one)."""
        metrics = self._metrics()
        if metrics is not None and grant._held_since is not None:
            metrics.released(self.metrics_label, grant.name, time.monotonic() - grant._held_since, lost)

    # -- helpers for subclasses ------------------------------------------------------

    def _live_grants(self) -> list[Grant]:
        """The grants (locks and election terms) this backend holds now: neither
        released nor known lost. For backends' background checks."""
        with self._held_lock:
            grants = [*self._held.values(), *self._terms.values()]
        return [grant for grant in grants if not grant.released and not grant.lost]

    def _adopt_term(self, name: str, grant: Grant | None) -> Grant | None:
        """Keep a newly won election term (resigned by :meth:`close`); a term won while
        the backend was being closed is given back and InvalidArgument raised."""
        if grant is None:
            return None
        with self._held_lock:
            if not self._closed:
                self._terms[id(grant)] = grant
                return grant
        self._give_back(grant)
        raise InvalidArgument(f"{self!r} was closed while campaigning in {name!r}")

    def _reenter(self, name: str) -> Grant | None:
        with self._held_lock:
            grant = self._held.get((name, threading.current_thread()))
            if grant is None:
                return None
            if grant.lost or grant.released:
                del self._held[(name, grant._thread)]
                return None
            grant._holds += 1
            return grant

    def _remember(self, grant: Grant) -> Grant:
        with self._held_lock:
            if not self._closed:
                self._held[(grant.name, grant._thread)] = grant
                return grant
        self._give_back(grant)
        raise InvalidArgument(f"{self!r} was closed while {grant.name!r} was being acquired")

    def _give_back(self, grant: Grant) -> None:
        """Release a grant that close() raced with: nobody else would ever release it."""
        grant.mark_released()
        try:
            self._release(grant)
        except Exception:
            _log.exception("releasing %r after close failed", grant)

    def _check_own(self, grant: object) -> None:
        if not isinstance(grant, Grant):
            raise InvalidArgumentType(f"expected a Grant, not {type(grant).__name__}")
        if grant.owner is not self:
            raise InvalidArgument(
                f"{grant!r} was issued to {grant.holder!r}, not to {self.identity!r}: "
                "only the holder may renew or release it"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument(f"{self!r} is closed")
