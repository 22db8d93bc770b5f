"""Leader election whose terms carry fencing tokens, on any backend.

An election is a fair queue of candidates, like a lock: the oldest candidate is the
leader, and its term's token is the token of its place in the queue (the create
revision of its etcd key, the czxid of its ZooKeeper node, a memory counter), so every
term's token is larger than every earlier term's; advertising a new value
(``proclaim``) keeps the token. A leader writes through a
:class:`~fencing_coord.FencedResource` with ``term.token``; a deposed leader that wakes
up late is refused there.

Backends provide the election capability, :class:`fencing_coord.spi.ElectionBackend`
(``_campaign``, ``_proclaim``, ``_leader``, ``_watch_leader``); this module builds the
public API on it once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import InvalidArgument, InvalidArgumentType, LockLost, LockTimeout
from .frontend import deadline_after
from .records import Leader
from .validation import check_timeout

if TYPE_CHECKING:
    from .grant import Grant
    from .spi import ElectionBackend

__all__ = [
    "MAX_VALUE_SIZE",
    "Election",
    "Leader",
    "LeaderFilter",
    "LeadershipEvent",
    "ObserverHandle",
    "Term",
    "TermView",
    "campaign_deadline",
    "not_elected",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds before an observer reads the leader again after a failed read.
_RETRY_AFTER_FAILURE = 0.5

#: Largest value a leader may advertise, in bytes.
MAX_VALUE_SIZE = 64 * 1024


def _check_value(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidArgumentType(f"value must be bytes, not {type(value).__name__}")
    if len(value) > MAX_VALUE_SIZE:
        raise InvalidArgument(f"value is {len(value)} bytes; the limit is {MAX_VALUE_SIZE}")
    return value


def campaign_deadline(timeout: object, value: object, on_queued: object) -> tuple[float | None, bytes, float | None]:
    """Check a campaign's arguments (both front ends): ``(seconds, value, deadline)``."""
    seconds = check_timeout(timeout)
    checked = _check_value(value)
    if on_queued is not None and not callable(on_queued):
        raise InvalidArgumentType("on_queued must be callable")
    return seconds, checked, deadline_after(seconds)


def not_elected(name: str, seconds: float | None) -> LockTimeout:
    return LockTimeout(f"not elected leader of {name!r} within {seconds} s")


class TermView:
    """What a term is, whichever front end won it: its grant's token and loss state.
    (:class:`Term` and ``fencing_coord.aio.AsyncTerm`` add resign and proclaim.)"""

    def __init__(self, election: ElectionName, grant: Grant) -> None:
        self.election = election
        self.grant = grant

    @property
    def token(self) -> int:
        return self.grant.token

    @property
    def lost(self) -> bool:
        return self.grant.lost

    @property
    def lost_reason(self) -> str | None:
        """Why the term was lost ("lease expired", "session expired", ...), or None."""
        return self.grant.lost_reason

    @property
    def resigned(self) -> bool:
        return self.grant.released

    def on_lost(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(term)`` once, from a background thread, when the term is lost."""
        if not callable(fn):
            raise InvalidArgumentType(f"on_lost needs a callable, not {type(fn).__name__}")
        self.grant.on_lost(lambda _grant: fn(self))

    def _proclaimable(self, value: object) -> bytes:
        """``value`` checked, when the term may still proclaim; LockLost once it is over."""
        checked = _check_value(value)
        if self.grant.released or self.grant.lost:
            raise LockLost(f"term {self.token} of election {self.election.name!r} is over")
        return checked

    def __repr__(self) -> str:
        holder = self.grant.holder
        return f"{type(self).__name__}(election={self.election.name!r}, token={self.token}, holder={holder!r})"


class ElectionName(Protocol):
    @property
    def name(self) -> str: ...


class LeaderFilter:
    """Which leaders an observer reports (both front ends): the first reading, then
    every change; never a term older than one already reported."""

    __slots__ = ("first", "highest", "last")

    def __init__(self) -> None:
        self.first = True
        self.last: Leader | None = None
        self.highest = -1

    def news(self, leader: Leader | None) -> bool:
        """True when ``leader`` is to be reported (and is then remembered)."""
        if leader is not None and leader.token < self.highest:
            return False
        if not self.first and leader == self.last:
            return False
        self.first = False
        self.last = leader
        if leader is not None:
            self.highest = max(self.highest, leader.token)
        return True


class Term(TermView):
    """One term of leadership. A context manager: leaving the block resigns.

    ``token`` is larger than every earlier term's token of this election. ``lost``
    turns True (and ``on_lost`` callbacks run once, in the background) when the
    lease/session behind the term is gone; a resignation is not a loss.
    """

    election: Election

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Block until the term is lost; True if it was within ``timeout`` seconds."""
        return self.grant.wait_lost(timeout)

    def proclaim(self, value: bytes) -> None:
        """Advertise ``value`` as the leader's value, within this term (same token).
        Raises :class:`LockLost` when the term is already over."""
        self.election.backend._proclaim(self.grant, self._proclaimable(value))

    def resign(self) -> bool:
        """End the term; True if it was still held. Idempotent."""
        return self.election.backend.release(self.grant)

    def __enter__(self) -> Term:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.resign()


class LeadershipEvent(threading.Event):
    """Set when leadership is lost; ``term`` is the term it belongs to (for its token)."""

    def __init__(self, term: Term) -> None:
        super().__init__()
        self.term = term


class ObserverHandle:
    """Stops an :meth:`Election.observe` subscription."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self._stop = stop

    def stop(self) -> None:
        """Stop observing; no callback starts after this returns. Idempotent."""
        self._stop()


class Election:
    """The election called ``name`` on ``backend`` (see :meth:`LockBackend.election`)."""

    def __init__(self, backend: ElectionBackend, name: str) -> None:
        self.backend = backend
        self.name = name

    def campaign(
        self, timeout: float | None = None, value: bytes = b"", *, on_queued: Callable[[], object] | None = None
    ) -> Term:
        """Stand as a candidate; block until leader and return the :class:`Term`.

        ``timeout`` in seconds (None: forever, 0: only if nobody else stands).
        ``on_queued()`` is called once, from this thread, if the candidate has to wait
        behind another. Raises :class:`LockTimeout` when the timeout passes (the
        candidacy is withdrawn), :class:`BackendUnavailable` when the service cannot be
        reached.
        """
        seconds, value, deadline = campaign_deadline(timeout, value, on_queued)
        grant = self.backend._start_term(self.name, value, deadline, on_queued)
        if grant is None:
            raise not_elected(self.name, seconds)
        return Term(self, grant)

    def leader(self) -> Leader | None:
        """Return the current :class:`Leader`, or None when nobody campaigns. Raises
        :class:`InvalidArgument` once the backend is closed."""
        self.backend._check_open()
        return self.backend._leader(self.name)

    def observe(self, fn: Callable[[Leader | None], object]) -> ObserverHandle:
        """Call ``fn(leader)`` with the current leader, then on every change, in order,
        from one background thread. Tokens of successive leaders only increase; a
        leader seen once is not reported again. Returns a handle with ``stop()``.
        Raises :class:`InvalidArgument` once the backend is closed."""
        if not callable(fn):
            raise InvalidArgumentType(f"observe needs a callable, not {type(fn).__name__}")
        self.backend._check_open()
        return _Observer(self, fn).start()

    def run(self, fn: Callable[[LeadershipEvent], T], timeout: float | None = None, value: bytes = b"") -> T:
        """Campaign, run ``fn(event)`` while leader, resign when it returns; return its result.

        ``event`` is set when leadership is lost, and ``event.term.token`` is the
        fencing token to write with. ``fn`` should return promptly once it is set.
        """
        with self.campaign(timeout, value) as term:
            event = LeadershipEvent(term)
            term.on_lost(lambda _term: event.set())
            return fn(event)

    def __repr__(self) -> str:
        return f"Election({self.name!r}, backend={self.backend!r})"


class _Observer:
    """Re-reads the leader whenever the backend says something may have changed, and
    reports real changes, in order, from a single thread."""

    def __init__(self, election: Election, fn: Callable[[Leader | None], object]) -> None:
        self.election = election
        self.fn = fn
        self.changed = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"fencing-coord-observe-{election.name}", daemon=True)
        self.unwatch: Callable[[], None] = lambda: None

    def start(self) -> ObserverHandle:
        self.unwatch = self.election.backend._watch_leader(self.election.name, self.changed.set)
        self.changed.set()
        self.thread.start()
        return ObserverHandle(self.stop)

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.changed.set()
        self.unwatch()
        if threading.current_thread() is not self.thread:
            self.thread.join()

    def _loop(self) -> None:
        reported = LeaderFilter()
        while True:
            self.changed.wait()
            self.changed.clear()
            if self.stopped.is_set():
                return
            try:
                leader = self.election.leader()
            except Exception:
                if self.election.backend.closed:
                    return  # nothing more to observe (every later read raises "closed")
                _log.exception("reading the leader of %r failed; retrying", self.election.name)
                # The change that woke us may have been the last one: read again soon.
                if not self.stopped.wait(_RETRY_AFTER_FAILURE):
                    self.changed.set()
                continue
            if reported.news(leader):
                try:
                    self.fn(leader)
                except Exception:
                    _log.exception("observer %r of %r failed", self.fn, self.election.name)
