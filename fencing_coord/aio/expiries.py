"""Time limits of many futures with one timer of the event loop: :class:`Expiries`.

A timer per request (``loop.call_later`` when sent, ``cancel`` when answered) costs a
handle, a push into the loop's heap of timers, whose order is compared in Python, and a
pop of the cancelled handle later: about a tenth of the loop thread's CPU time per
ZooKeeper acquire+release. Answers almost always come long before their limit, so the
limits are kept in a dict instead, and one timer, set for the earliest limit, expires
what is due when it fires and is set again for what remains."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

__all__ = ["Expiries"]

_log = logging.getLogger(__name__)

# A limit this close counts as reached when the timer fires (the loop may run a timer
# up to its clock's resolution early); an expired request never gets less than this.
_SLACK = 0.001


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Expiries:
    """Futures of one loop that fail with :class:`TimeoutError` at their limit (a
    ``time.monotonic()`` value) unless done or discarded before. Used from the loop's
    thread only."""

    __slots__ = ("_at", "_limits", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._limits: dict[asyncio.Future[Any], float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._at = float("inf")  # the limit the timer is set for

    def __len__(self) -> int:
        return len(self._limits)

    def add(self, future: asyncio.Future[Any], limit: float) -> None:
        """Fail ``future`` with TimeoutError at ``limit`` (infinity: never), at least
        a millisecond from now."""
        if limit == float("inf"):
            return
        limit = max(limit, time.monotonic() + _SLACK)
        self._limits[future] = limit
        if limit < self._at:
            self._set_timer(limit)

    def discard(self, future: asyncio.Future[Any]) -> None:
        """Forget ``future``'s limit (it is answered). The timer stays: when it fires for
        nothing due, it is set for the earliest limit left, if any."""
        self._limits.pop(future, None)

    def _set_timer(self, limit: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = limit
        self._timer = self._loop.call_at(self._loop.time() + (limit - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer, self._at = None, float("inf")
        due = time.monotonic() + _SLACK
        for future, limit in list(self._limits.items()):
            if limit <= due:
                del self._limits[future]
                _expire(future)
        if self._limits:
            self._set_timer(min(self._limits.values()))
