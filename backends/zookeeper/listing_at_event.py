"""The queue's listing sent from the predecessor's deletion event: :class:`ListingAtEvent`.

A waiter whose listing showed more than one older contender watches the nearest of
them (its predecessor) and, when that node goes, must list the queue to learn whether it
is first now. That listing is on the path of every such handoff. Sent by the waiter, it
waits for the waiter to be woken (a thread, or a pass of the event loop behind whatever
else it runs); sent by the watch itself as it runs (on kazoo's connection thread as it
reads the event, for the asyncio front end; on kazoo's callback thread for the blocking
one), it is in flight at once, and the waiter is woken when its answer is in (asyncio:
one hop to the loop instead of two) or at once (blocking: it then waits for that answer).

Why it can stand for the waiter's own listing. It is sent only for the predecessor's
``DELETED`` event, after that event was read, on the same session: ZooKeeper takes it
after the deletion, as it would the waiter's. It is collected with the rules of
:func:`.kazoo_results.collector`: an answer from another connection than the one it went
out on is not used (the listing is sent again). A listing that does not show our node
proves it gone, as any listing sent after our create was answered does. Any other event
(kazoo fires every watch with a ``NONE`` event when the connection drops or the session
ends) only wakes the waiter, which then lists the queue itself once connected. A wait
that ended before the event disarms its watch (:meth:`ListingAtEvent.disarm`): a later
event sends nothing. So the requests per grant do not change: the listing is the one the
waiter sent before, sent earlier.
"""

from __future__ import annotations

from collections.abc import Callable

from kazoo.protocol.states import EventType

from .kazoo_results import collector

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from .session import Wakeup

__all__ = ["ListingAtEvent"]

_DISARMED: Final = (0, None)  # ``sent`` of a watch whose wait is over: its event sends nothing


class ListingAtEvent:
    """The watch on a predecessor that is not the only older contender (both front ends):
    at its ``DELETED`` event it sends ``listing()`` (on connection ``epoch()``) and sets
    ``woke``, once the answer is in if the result can say so (``notify``, see
    :class:`.aio_session.LoopResult`), else at once; at any other event it only sets
    ``woke``. Never raises on kazoo's thread: a listing that cannot be sent is left to
    the waiter."""

    __slots__ = ("epoch", "listing", "sent", "woke")
    runs_at_once: Final = True  # never blocks (see .kazoo_hooks.AT_ONCE)

    def __init__(self, epoch: Callable[[], int], listing: Callable[[], Any], woke: Wakeup) -> None:
        self.epoch = epoch
        self.listing = listing
        self.woke = woke
        self.sent: tuple[int, Any] | None = None  # (connection, kazoo's result) once the event came

    def __call__(self, event: Any) -> None:  # a kazoo thread: never block
        if self.sent is not None or getattr(event, "type", None) != EventType.DELETED:
            self.woke.set()  # a watch fires once; a disarmed one or a NONE event only wakes
            return
        try:
            sent_on = self.epoch()
            result = self.listing()
        except Exception:  # kazoo's thread must live on; the waiter lists the queue itself
            self.woke.set()
            return
        self.sent = (sent_on, result)
        notify = getattr(result, "notify", None)
        if notify is None:
            self.woke.set()
        else:
            notify(self.woke.set)

    def disarm(self) -> None:
        """The wait is over: an event from now on only wakes (it sends no listing)."""
        if self.sent is None:
            self.sent = _DISARMED

    def start(self) -> Callable[[], Any]:
        """The ``start`` of the waiter's request for the listing, once the wait is over:
        the one sent at the event, if it came (collected as
        :func:`.kazoo_results.collector` does), else a new one. Disarms the watch."""
        self.disarm()
        sent = self.sent
        if sent is None or sent is _DISARMED:  # (never None once disarmed: for the type checker)
            return self.listing
        return collector(self.epoch, sent[0], sent[1], self.listing)
