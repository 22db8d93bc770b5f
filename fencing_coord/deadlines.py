"""How long the requests of one call may take: the timeout bound every backend keeps.

A call given a timeout (``acquire``, ``campaign``; ``try_acquire`` and ``timeout=0``
"try once") returns or raises within that timeout plus :data:`SLACK` seconds on every
backend, even when the service stops answering: each of its requests gets the
``timeout`` option, but never more than what is left of the call's time. A "try once"
call has :data:`TRY_ONCE` seconds for its requests; a request that starts at the very
end still gets :data:`LAST_REQUEST` seconds (the look that follows a wait), and
withdrawing the caller's entry after the deadline :data:`WITHDRAWAL` seconds, beyond
which the withdrawal is left to the background. These three fit in :data:`SLACK`.
"""

from __future__ import annotations

import logging
import time

__all__ = ["LAST_REQUEST", "SLACK", "TRY_ONCE", "WITHDRAWAL", "RequestBudget"]

_log = logging.getLogger(__name__)

#: Seconds a call may return or raise after its timeout.
SLACK = 0.5
#: Seconds the requests of a "try once" call (deadline already passed) may take together.
TRY_ONCE = 0.25
#: Seconds any request may take, even when it starts at the end of the call's time.
LAST_REQUEST = 0.1
#: Seconds withdrawing an entry may take after the deadline (then: in the background).
WITHDRAWAL = 0.2


class RequestBudget:
    """The time the requests of one call may take: each gets ``per_request`` seconds
    (the backend's ``timeout`` option), but none ends after ``stop`` (a
    ``time.monotonic()`` value; None: a call without a deadline). Not changed once made.

    A plain class, not a dataclass: making a dataclass costs about a millisecond at
    import, on the path of every process's first grant (issue 13: startup)."""

    __slots__ = ("per_request", "stop")

    def __init__(self, per_request: float, stop: float | None) -> None:
        self.per_request = per_request
        self.stop = stop

    def __repr__(self) -> str:
        return f"RequestBudget(per_request={self.per_request!r}, stop={self.stop!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestBudget):
            return NotImplemented
        return (self.per_request, self.stop) == (other.per_request, other.stop)

    def __hash__(self) -> int:
        return hash((self.per_request, self.stop))

    @classmethod
    def until(cls, deadline: float | None, per_request: float) -> RequestBudget:
        """The budget of a call whose deadline is ``deadline`` (None: no limit; in the
        past: "try once", which gets :data:`TRY_ONCE` seconds)."""
        if deadline is None:
            return cls(per_request, None)
        return cls(per_request, max(deadline, time.monotonic() + TRY_ONCE))

    def request(self) -> float:
        """Seconds the next request may take: what is left, at least
        :data:`LAST_REQUEST`, at most ``per_request``."""
        return self._left(LAST_REQUEST)

    def waiting(self) -> float | None:
        """Seconds a waiter may ride out a lost connection: until the call's time is up
        (at least :data:`LAST_REQUEST`); None without a deadline (as long as it takes)."""
        if self.stop is None:
            return None
        return max(LAST_REQUEST, self.stop - time.monotonic())

    def withdrawal(self) -> float:
        """Seconds withdrawing the caller's entry may take: what is left, at least
        :data:`WITHDRAWAL`, at most ``per_request``."""
        return self._left(WITHDRAWAL)

    def _left(self, floor: float) -> float:
        if self.stop is None:
            return self.per_request
        return min(self.per_request, max(floor, self.stop - time.monotonic()))
