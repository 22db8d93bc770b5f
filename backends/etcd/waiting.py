"""How a waiter reads its watch stream, for both etcd queue drivers
(:class:`.queue.EtcdQueue`, blocking, and :class:`.aio_queue.AsyncEtcdQueue`): which
watches it holds, when the look that covers their creation is due, and when the wait
is over. No I/O: each driver sends the requests and makes the look it is told to.

The watch starts from "now" (see :meth:`.places.LineRequests.watch_request`), so a
deletion between the waiter's read (``place.seen``) and its creation is caught by one
look once it exists. Behind the holder, that look is made at once: the holder may well
have released meanwhile. Behind a waiting predecessor, which can only have left in that
gap by withdrawing (rare), the look is made ``GAP_CHECK`` seconds into the wait, once
the watch exists: the asyncio driver asks its own stream for progress then (the answer
says the time has come, :meth:`WatchedWait.read`), the blocking driver, whose watch is
one of a shared stream's, keeps the time itself (:meth:`WatchedWait.gap_due`). A wait
that ends before, woken by the predecessor's DELETE, pays only the look every wake-up
makes.
"""

from __future__ import annotations

import enum
from typing import Any

from etcd3 import etcdrpc

from .places import LineRequests, Place

__all__ = ["GAP_CHECK", "PROGRESS", "Step", "WatchedWait"]

#: Seconds into a wait behind a waiting predecessor after which the look that covers
#: the watch's creation is made. (At 32 contending processes on a 2-core machine a
#: wait lasted 0.5-1 s: a shorter delay added a look to most of them.)
GAP_CHECK = 1.0

#: The request whose answer tells a waiter that its delayed look is due.
PROGRESS = etcdrpc.WatchRequest(progress_request=etcdrpc.WatchProgressRequest())


class Step(enum.Enum):
    """What a waiter does after a watch response."""

    READ_ON = "read on"
    LOOK = "look"  # once, now: then tell :meth:`WatchedWait.looked_at` what it found
    END = "end"  # the wait is over: look as every wake-up does


class WatchedWait:
    """The watch of one wait at ``place``: :attr:`request` to send at once,
    :attr:`gap_check` (seconds after which the gap's look is due: :data:`PROGRESS` on
    the wait's own stream, or :meth:`gap_due`; 0: never), and :meth:`read`, the meaning
    of each response.

    One watcher (see :meth:`.places.LineRequests.watch_request`): behind the holder it
    covers our key too, and once it reports every event since ``place.seen``
    (:meth:`covered`) the holder's DELETE alone makes us first. Otherwise the look every
    wake-up makes finds our key gone, and a lost lease wakes the waiter through the
    session."""

    __slots__ = ("clean", "gap_check", "line", "looked", "place", "progressed", "request", "since")

    def __init__(self, line: LineRequests, place: Place) -> None:
        self.line = line
        self.place = place
        self.request: Any = line.watch_request(place)
        self.gap_check = 0.0 if place.head_before else GAP_CHECK
        self.since = 0  # the revision our watch was created at (0: not yet)
        self.progressed = place.head_before  # the gap's look is due once the watch exists
        self.looked = False
        self.clean = False  # the gap's look found our key and the same predecessor

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
        elif not response.events:  # the answer to our progress request
            self.progressed = True
        return self._look_due()

    def gap_due(self) -> Step:
        """The gap's look is due (``gap_check`` seconds into the wait), told by a timer
        rather than by the answer to a progress request: make it now, or read on."""
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
