"""A grant of a lock (or a term of an election): :class:`Grant`.

A backend subclasses :class:`Grant` to carry its own typed data (the etcd key, the
ZooKeeper node) next to the public fields; see :mod:`fencing_coord.spi`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import InvalidArgumentType
from .validation import check_timeout

__all__ = ["Grant", "LostCallback"]

_log = logging.getLogger(__name__)

LostCallback = Callable[["Grant"], object]


class Grant:
    """One grant of a lock: its fencing token and the signal that it was lost.

    ``token`` is strictly larger than the token of every earlier grant of ``name``.
    ``lost`` turns True, and every ``on_lost`` callback runs once from a background
    thread, when the backend learns that the lease or session behind the grant is gone.
    A voluntary ``release`` does not count as a loss.
    """

    # One client may hold thousands of grants: the events a waiter needs (a
    # threading.Event is ~1.2 KiB) are made only when someone waits (issue 13: < 2 KiB
    # per held lock). Every field below is read and written under ``_lock``.
    __slots__ = (
        "_callbacks",
        "_callbacks_done",
        "_context",
        "_done_event",
        "_held_since",
        "_holds",
        "_lock",
        "_lost",
        "_lost_event",
        "_lost_reason",
        "_probe",
        "_released",
        "_settled_hooks",
        "holder",
        "name",
        "owner",
        "token",
    )

    def __init__(
        self,
        name: str,
        token: int,
        holder: str,
        *,
        owner: object = None,
        probe: Callable[[Grant], None] | None = None,
    ) -> None:
        self.name = name
        self.token = token
        self.holder = holder
        #: The backend object that issued this grant (checked by renew/release).
        self.owner = owner
        self._probe = probe
        self._lock = threading.Lock()
        self._lost = False
        #: Set once lost; made by the first wait_lost() that has to wait.
        self._lost_event: threading.Event | None = None
        #: The callbacks registered before the loss have returned.
        self._callbacks_done = False
        #: Set once they have; made by the first wait_lost() that has to wait for them.
        self._done_event: threading.Event | None = None
        self._lost_reason: str | None = None
        self._released = False
        self._callbacks: list[LostCallback] = []
        self._holds = 1
        # time.monotonic() of the grant, when metrics were on (for lock_hold_duration).
        self._held_since: float | None = None
        # Who acquired it, for the reentrancy rule: the Thread object (not its ident:
        # CPython reuses idents of finished threads), or the asyncio task; the backend's
        # template sets it when it books the grant.
        self._context: object = threading.current_thread()
        #: Called once the callbacks are done (asyncio's wait_lost); made when needed.
        self._settled_hooks: list[Callable[[], object]] | None = None

    def __repr__(self) -> str:
        state = "lost" if self._lost else "released" if self._released else "held"
        return f"Grant(name={self.name!r}, token={self.token}, holder={self.holder!r}, {state})"

    @property
    def lost(self) -> bool:
        """True once the backend knows the lease/session behind this grant is gone."""
        if self._probe is not None and not self._lost and not self._released:
            self._probe(self)
        return self._lost

    @property
    def lost_reason(self) -> str | None:
        """Why the grant was lost ("lease expired", "session expired", ...), or None."""
        return self._lost_reason

    @property
    def released(self) -> bool:
        """True once the holder gave the lock up with ``release``."""
        return self._released

    def on_lost(self, fn: LostCallback) -> None:
        """Call ``fn(grant)`` once, from a background thread, when this grant is lost.

        Registered after the loss, ``fn`` still runs (once, in the background).
        Exceptions from ``fn`` are logged and otherwise ignored.
        """
        if not callable(fn):
            raise InvalidArgumentType(f"on_lost needs a callable, not {type(fn).__name__}")
        with self._lock:
            if not self._lost:
                self._callbacks.append(fn)
                return
        self._dispatch([fn], done=False)

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Block until the grant is lost and the callbacks registered before the loss
        have returned; True if that happened within ``timeout`` seconds.

        ``timeout`` follows :func:`~fencing_coord.validation.check_timeout`: None, or a
        number >= 0; a finite one above ``MAX_SECONDS`` waits forever, like None. Raises
        :class:`InvalidArgument`/:class:`InvalidArgumentType` for anything else."""
        seconds = check_timeout(timeout)
        deadline = None if seconds is None else time.monotonic() + seconds
        if not self.lost:  # lets a lazily-checking backend (memory) notice first
            with self._lock:
                if not self._lost and self._lost_event is None:
                    self._lost_event = threading.Event()
                lost_event = None if self._lost else self._lost_event
            if lost_event is not None:
                lost_event.wait(seconds)
        with self._lock:
            if not self._lost:
                return False
            if self._callbacks_done:
                return True
            if self._done_event is None:
                self._done_event = threading.Event()
            done_event = self._done_event
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return done_event.wait(remaining)

    def _when_settled(self, notify: Callable[[], object]) -> None:
        """Call ``notify()`` once the grant is lost and the callbacks registered before
        the loss have returned (at once if that has happened), from whichever thread
        gets there; it must not block. How ``fencing_coord.aio.wait_lost`` waits
        without a thread of its own."""
        with self._lock:
            if not self._callbacks_done:
                if self._settled_hooks is None:
                    self._settled_hooks = []
                self._settled_hooks.append(notify)
                return
        notify()

    # -- for backends ---------------------------------------------------------------

    def mark_lost(self, reason: str) -> bool:
        """Record the loss; fire the callbacks once. True on the first call only.

        Backends call this; it never blocks on the callbacks.
        """
        with self._lock:
            if self._lost or self._released:
                return False
            self._lost_reason = reason
            self._lost = True
            lost_event = self._lost_event
            callbacks, self._callbacks = self._callbacks, []
        if lost_event is not None:
            lost_event.set()
        self._dispatch(callbacks, done=True)
        return True

    def mark_released(self) -> None:
        """Record a voluntary release: the grant will never be reported lost."""
        with self._lock:
            self._released = True
            self._callbacks.clear()

    def _dispatch(self, callbacks: list[LostCallback], *, done: bool) -> None:
        """Run ``callbacks`` on a new thread; ``done``: they are those registered before
        the loss, and wait_lost() returns once they have returned."""

        def run() -> None:
            try:
                for fn in callbacks:
                    try:
                        fn(self)
                    except Exception:
                        _log.exception("on_lost callback %r failed for %r", fn, self)
            finally:
                if done:
                    with self._lock:
                        self._callbacks_done = True
                        done_event = self._done_event
                        hooks, self._settled_hooks = self._settled_hooks or [], None
                    if done_event is not None:
                        done_event.set()
                    for notify in hooks:
                        notify()

        threading.Thread(target=run, name=f"fencing-coord-on-lost-{self.name}", daemon=True).start()
