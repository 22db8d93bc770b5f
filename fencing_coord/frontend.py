"""What both front ends of the lock contract share: the blocking
:class:`~fencing_coord.interface.LockBackend` and the asyncio
:class:`~fencing_coord.aio.AsyncLockBackend` are one protocol with two ways of waiting.

:class:`FrontEnd` holds everything of the template that does no I/O: argument checks,
the reentrancy rule, the book of grants held (locks and election terms), the closed
state and the checks on a grant handed back. The two templates add only their
``acquire``/``release``/``close`` shells, which call these pieces and then the SPI, the
one with a plain call, the other with ``await``.

Reentrancy is per *holder context*: the thread that acquired a grant (blocking API) or
the asyncio task (async API). A context that acquires a name it already holds through
this backend object gets the same grant back (same token, hold count + 1); any other
context of the same backend object is an ordinary contender.

Metrics (:mod:`fencing_coord.observability`) are taken here too, the same for every
backend and both front ends: acquisitions granted (with their latency) and failed (by
reason), hold durations at release, losses (by reason, from ``on_lost``), and
``lease_expired_while_executing``: a release (or the end of a ``lock()`` block) that
finds its grant already lost. Reentrant acquisitions and election terms are not counted.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

from .errors import InvalidArgument, InvalidArgumentType, LockLost, LockTimeout
from .grant import Grant
from .validation import check_name, check_timeout

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, NamedTuple

    from .observability import Metrics
else:
    from .typeless import NamedTuple

# fencing_coord.observability is imported once metrics are in use: whoever installs or
# passes a Metrics imported it first, so until it is imported there are none to take
# (issue 13: startup; its instruments, enum and dataclass are a visible part of a connect).
_OBSERVABILITY = "fencing_coord.observability"

__all__ = ["FrontEnd", "Ticket", "deadline_after"]

_log = logging.getLogger(__name__)


def deadline_after(seconds: float | None) -> float | None:
    """The ``time.monotonic()`` deadline ``seconds`` from now (None: no deadline)."""
    return None if seconds is None else time.monotonic() + seconds


class Ticket(NamedTuple):
    """An acquisition that passed the checks: either a grant the caller already holds
    (reentered), or what the SPI is to be asked with."""

    name: str
    seconds: float | None
    deadline: float | None
    reentered: Grant | None
    context: object
    #: Where the acquisition's metrics go (None: nowhere), and when it started.
    metrics: Metrics | None
    started: float


class FrontEnd:
    """The I/O-free half of a backend's public template (see the module docstring)."""

    schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, ttl: float, namespace: str, identity: str) -> None:
        self.ttl = ttl
        self.namespace = namespace
        self.identity = identity
        self._held: dict[tuple[str, object], Grant] = {}
        self._terms: dict[int, Grant] = {}
        self._held_lock = threading.Lock()
        self._closed = False
        #: Where this backend's lock metrics go; None: the process-wide
        #: :func:`~fencing_coord.observability.set_metrics` one, if any.
        self.metrics: Metrics | None = None

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} identity={self.identity!r} namespace={self.namespace!r}>"

    # -- acquire ------------------------------------------------------------------------------

    def _ticket(self, name: str, timeout: object, on_queued: Callable[[], object] | None, context: object,
                *, try_once: bool = False) -> Ticket:
        """Check an acquisition's arguments and apply the reentrancy rule."""
        check_name(name)
        seconds = 0.0 if try_once else check_timeout(timeout)
        if on_queued is not None and not callable(on_queued):
            raise InvalidArgumentType("on_queued must be callable")
        self._check_open()
        reentered = self._reenter(name, context)
        metrics = None if reentered is not None else self._metrics()
        started = time.monotonic()
        deadline = started if try_once else None if seconds is None else started + seconds
        return Ticket(name, seconds, deadline, reentered, context, metrics, started)

    def _acquire_failed(self, ticket: Ticket, exc: Exception) -> None:
        """Count an acquisition that raised ``exc``."""
        if ticket.metrics is not None:
            from .observability import failure_reason

            ticket.metrics.acquire_failed(self.metrics_label, ticket.name, failure_reason(exc))

    def _acquire_done(self, ticket: Ticket, grant: Grant | None) -> None:
        """Count an acquisition's outcome (None: a try that found the lock taken)."""
        metrics = ticket.metrics
        if metrics is not None:
            if grant is None:
                metrics.acquire_failed(self.metrics_label, ticket.name, "busy")
            else:
                self._observe_grant(metrics, grant, ticket.started)

    def _granted(self, ticket: Ticket, grant: Grant | None, *, try_once: bool = False) -> Grant | None:
        """Book what the SPI returned: the grant, None for a try that found the lock
        taken; LockTimeout for a wait that ran out. A grant that raced with ``close()``
        is returned with ``released`` set: the caller gives it back and raises
        :meth:`_closed_meanwhile`."""
        if grant is None:
            if try_once:
                return None
            raise LockTimeout(f"lock {ticket.name!r} not acquired within {ticket.seconds} s")
        with self._held_lock:
            if not self._closed:
                grant._context = ticket.context
                self._held[(grant.name, ticket.context)] = grant
                return grant
        grant.mark_released()
        return grant

    def _closed_meanwhile(self, name: str, doing: str = "being acquired") -> InvalidArgument:
        return InvalidArgument(f"{self!r} was closed while {name!r} was {doing}")

    def _reenter(self, name: str, context: object) -> Grant | None:
        with self._held_lock:
            grant = self._held.get((name, context))
            if grant is None:
                return None
            if grant.lost or grant.released:
                del self._held[(name, context)]
                return None
            grant._holds += 1
            return grant

    # -- renew, release, close -------------------------------------------------------------

    def _check_renewable(self, grant: object) -> Grant:
        """The grant, when it may be renewed: issued here, neither released nor lost."""
        mine = self._check_own(grant)
        if mine.released:
            raise LockLost(f"{mine!r} was released")
        if mine.lost:
            raise LockLost(f"{mine!r} was lost: {mine.lost_reason}")
        return mine

    def _unbook(self, grant: object) -> bool | None:
        """Undo one acquisition of ``grant`` in the book: True when that was not the last
        hold (nothing more to do); False when it was already released, or is known lost
        (its ``lost`` is True, the backend's local rule included: the SPI's ``_forget``
        has dropped it, no request made); None when the backend must now give the lock
        up (the SPI's ``_release``, whose answer goes to :meth:`_released`)."""
        mine = self._check_own(grant)
        # Reading ``lost`` runs the backend's local check (its probe), outside our lock.
        probed_lost = mine.lost
        with self._held_lock:
            if mine.released:
                return False
            known_lost = probed_lost or mine._lost
            if mine._holds > 1 and not known_lost:
                mine._holds -= 1
                return True
            mine.mark_released()
            key = (mine.name, mine._context)
            if self._held.get(key) is mine:
                del self._held[key]
            self._terms.pop(id(mine), None)
        if known_lost:
            self._forget(mine)
            return self._released(mine, False)
        return None

    def _forget(self, grant: Grant) -> None:
        """Drop what the backend keeps for ``grant``, released after it was known lost.

        Called instead of the SPI's ``_release``, by both front ends: no request, no
        blocking, no ``await`` (whatever is left on the service goes with the
        lease/session, or in the background). Optional; the default does nothing."""
        return None

    def _close_book(self) -> list[Grant] | None:
        """Mark the backend closed; the grants to give up (None: it already was closed)."""
        with self._held_lock:
            if self._closed:
                return None
            self._closed = True
            held = list(self._held.values()) + list(self._terms.values())
            self._held.clear()
            self._terms.clear()
        for grant in held:
            grant.mark_released()
            if grant._held_since is not None:
                self._observe_release(grant, lost=grant.lost)
        return held

    def _book_term(self, grant: Grant | None) -> Grant | None:
        """Keep a newly won election term (resigned by close); a term won while the
        backend was being closed comes back with ``released`` set (give it back)."""
        if grant is None:
            return None
        with self._held_lock:
            if not self._closed:
                self._terms[id(grant)] = grant
                return grant
        grant.mark_released()
        return grant

    def _released(self, grant: Grant, held: bool) -> bool:
        """After the SPI gave ``grant`` up (``held``: it still was): count it; ``held``."""
        if grant._held_since is not None:
            self._observe_release(grant, lost=not held)
        return held

    # -- metrics ------------------------------------------------------------------------------

    @property
    def metrics_label(self) -> str:
        """This backend's ``backend`` label: its first URL scheme (``etcd``, ``memory``)."""
        return self.schemes[0] if self.schemes else type(self).__name__

    def _metrics(self) -> Metrics | None:
        if self.metrics is not None:
            return self.metrics
        observability = sys.modules.get(_OBSERVABILITY)
        return None if observability is None else observability._current

    def _observe_grant(self, metrics: Metrics, grant: Grant, started: float) -> None:
        from .observability import observe_grant

        observe_grant(metrics, self.metrics_label, grant, started)

    def _observe_release(self, grant: Grant, *, lost: bool) -> None:
        """Count a grant given up (not for the reentrant releases before the last one)."""
        metrics = self._metrics()
        if metrics is not None and grant._held_since is not None:
            metrics.released(self.metrics_label, grant.name, time.monotonic() - grant._held_since, lost)

    # -- helpers for subclasses ------------------------------------------------------------

    def _live_grants(self) -> list[Grant]:
        """The grants (locks and election terms) this backend holds now: neither
        released nor known lost. For backends' background checks."""
        with self._held_lock:
            grants = [*self._held.values(), *self._terms.values()]
        return [grant for grant in grants if not grant.released and not grant.lost]

    def _check_own(self, grant: object) -> Grant:
        if not isinstance(grant, Grant):
            raise InvalidArgumentType(f"expected a Grant, not {type(grant).__name__}")
        if grant.owner is not self:
            raise InvalidArgument(
                f"{grant!r} was issued to {grant.holder!r}, not to {self.identity!r}: "
                "only the holder may renew or release it"
            )
        return grant

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument(f"{self!r} is closed")
