"""How a waiter reads its watch stream, for both etcd queue drivers
(:class:`.queue.EtcdQueue`, blocking, and :class:`.aio_queue.AsyncEtcdQueue`): which
watches it holds, when the look that covers their creation is due, and when the wait
is over. No I/O: each driver sends the requests and makes the look it is told to.

The watch starts from "now" (see :meth:`.places.LineRequests.watch_request`), so a
deletion between the waiter's read (``place.seen``) and its creation is caught by one
look once it exists. Behind the holder, that look is made at once: the holder may well
have released meanwhile. Behind a waiting predecessor, which can only have left in that
gap by withdrawing (rare), the look is made ``GAP_CHECK`` seconds into the wait, once
the watch exists: both drivers' watches are one of a shared stream's (:mod:`.waitbook`),
where the answer to a progress request is not one wait's, so the wait keeps the time
itself (:meth:`WatchedWait.due`). A wait that ends before, woken by the predecessor's
DELETE, pays only the look every wake-up makes.

A driver's wait is this loop, with its own ``get`` (the watch's next response within
``read_for`` seconds: None when none came, :data:`.waitbook.ENDED` when the stream
ended or the wait was woken) and ``look``::

    watched.start(now, recheck_interval, deadline)
    while (step := watched.due(now)) is not Step.END:
        if step is Step.READ_ON:
            step = watched.got(get(watched.read_for))
        if step is Step.LOOK:
            step = watched.looked_at(look(place))
        if step is Step.END:
            break
    if watched.spinning(now):
        pause 0.05 s (a member that refuses at once)
"""

from __future__ import annotations

import enum
import math
from typing import Any

from .places import LineRequests, Place
from .waitbook import ENDED

__all__ = ["GAP_CHECK", "Step", "WatchedWait"]

#: Seconds into a wait behind a waiting predecessor after which the look that covers
#: the watch's creation is made. (At 32 contending processes on a 2-core machine a
#: wait lasted 0.5-1 s: a shorter delay added a look to most of them.)
GAP_CHECK = 1.0

#: A wait whose stream ended sooner than this pauses as long (a member that refuses at
#: once must not make its waiters spin).
_REFUSED = 0.05


class Step(enum.Enum):
    """What a waiter does next."""

    READ_ON = "read on"  # read the watch (for at most WatchedWait.read_for seconds)
    LOOK = "look"  # once, now: then tell :meth:`WatchedWait.looked_at` what it found
    END = "end"  # the wait is over: look as every wake-up does


class WatchedWait:
    """The watch of one wait at ``place``: :attr:`request` to send at once,
    :attr:`gap_check` (seconds after which the gap's look is due, see :meth:`due`; 0:
    never), and :meth:`read`, the meaning of each response.

    One watcher (see :meth:`.places.LineRequests.watch_request`): behind the holder it
    covers our key too, and once it reports every event since ``place.seen``
    (:meth:`covered`) the holder's DELETE alone makes us first. Otherwise the look every
    wake-up makes finds our key gone, and a lost lease wakes the waiter through the
    session."""

    __slots__ = ("clean", "end", "ended", "gap_at", "gap_check", "line", "looked", "place", "progressed",
                 "read_for", "request", "since", "started")

    def __init__(self, line: LineRequests, place: Place) -> None:
        self.line = line
        self.place = place
        self.request: Any = line.watch_request(place)
        self.gap_check = 0.0 if place.head_before else GAP_CHECK
        self.since = 0  # the revision our watch was created at (0: not yet)
        self.progressed = place.head_before  # the gap's look is due once the watch exists
        self.looked = False
        self.clean = False  # the gap's look found our key and the same predecessor
        self.started = self.end = 0.0
        self.gap_at = math.inf
        self.read_for = 0.0  # seconds to read the watch for, when due() says READ_ON
        self.ended = False  # the stream ended, or the wait was woken

    def start(self, now: float, recheck: float, deadline: float | None) -> None:
        """The wait starts at ``now`` (``time.monotonic()``): it is over ``recheck``
        seconds later at the latest (a silent stream is not trusted forever: a member
        cut off in a way etcd does not detect could leave it silent), or at ``deadline``."""
        self.started = now
        self.end = now + recheck if deadline is None else min(now + recheck, deadline)
        self.gap_at = now + self.gap_check if self.gap_check else math.inf

    def due(self, now: float) -> Step:
        """What to do at ``now``: END once the wait's time is over; LOOK when the gap's
        look came due (then tell :meth:`looked_at`); else READ_ON: read the watch for
        at most :attr:`read_for` seconds (> 0) and tell :meth:`got`."""
        if now >= self.end:
            return Step.END
        step = Step.READ_ON
        if now >= self.gap_at:  # also when that time passed unnoticed (a busy machine)
            self.gap_at = math.inf
            step = self.gap_due()
        self.read_for = min(self.end, self.gap_at) - now
        return step

    def got(self, response: Any) -> Step:
        """What to do after reading the watch gave ``response``: None (nothing came in
        time) reads on; :data:`.waitbook.ENDED` ends the wait; else as :meth:`read`."""
        if response is None:
            return Step.READ_ON
        if response is ENDED:
            self.ended = True
            return Step.END
        return self.read(response)

    def spinning(self, now: float) -> bool:
        """Whether the wait's stream ended within moments of its start: the driver
        pauses 0.05 s before it looks again."""
        return self.ended and now - self.started < _REFUSED

    def covered(self) -> bool:
        """Whether our watcher reports every deletion since ``place.seen``: it was
        created with nothing written since (it starts after the revision its creation
        answer carries), or the gap's look, made once it existed, came back unchanged."""
        return self.clean or 0 < self.since <= self.place.seen

    def read(self, response: Any) -> Step:
        """What to do after ``response``: end the wait, make the gap's look, or read on."""
        if self.line.watched(self.place, response, covered=self.covered()):
            return Step.END
        if response.created:
            self.since = int(response.header.revision)
        return self._look_due()

    def gap_due(self) -> Step:
        """The gap's look is due (``gap_check`` seconds into the wait; :meth:`due` calls
        it then): make it now, or read on."""
        self.progressed = True
        return self._look_due()

    def _look_due(self) -> Step:
        if self.progressed and self.since > self.place.seen and not self.looked:
            # Written to since we looked: our watch is in place now, so one more look
            # cannot miss a deletion.
            self.looked = True
            return Step.LOOK
        return Step.READ_ON

    def looked_at(self, now: Place | None) -> Step:
        """After the gap's look found ``now`` (None: our key is gone): end the wait if
        anything changed, else read on (and the watcher covers everything since
        ``place.seen`` from now on)."""
        if now is None or now.predecessor != self.place.predecessor:
            return Step.END
        self.clean = True
        return Step.READ_ON
