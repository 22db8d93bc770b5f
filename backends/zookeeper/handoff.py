"""The handoff from the watch event: a waiter that is next in line is granted when its
predecessor's node is deleted, with no request of its own.

Why the event alone suffices. A waiter's listing of the queue showed exactly one
contender older than itself, its predecessor. ZooKeeper numbers the children of a parent
in creation order, so every contender created after that listing is younger than the
waiter: once the predecessor's node is deleted, nobody older remains, provided the
waiter's own node still exists. That proviso is checked by a second watch, on the
waiter's own node, set in the same round trip as the predecessor's (both requests go out
before either answer is awaited). ZooKeeper delivers a session's watch events in the
order of the changes, and kazoo runs watch callbacks one at a time in that order (the
asyncio front end runs these two on kazoo's connection thread as it reads the events,
in that order too: :func:`.kazoo_hooks.run_watches_at_once`), so if
our node was deleted before the predecessor's, its event is handled first and the
predecessor's event grants nothing (the waiter lists the queue again, finds its node
gone and queues anew). A session that ended is caught when the grant is registered
(:meth:`.monitor.Monitor.register` compares the node's owner with the session).

After the grant the watch on our node is the grant's own watch (the monitor then does not
set another): its event is handed to :meth:`.grant.ZooKeeperGrant.watch`.

Both front ends run this logic (:class:`NextWait`): the blocking driver waits on a
:class:`threading.Event`, the asyncio one on a :class:`fencing_coord.aio.signals.LoopSignal`.
"""

from __future__ import annotations

from collections.abc import Callable

from kazoo.protocol.states import EventType

from .grant import Entry, ZooKeeperGrant
from .kazoo_results import collector
from .wakes import wakes_together

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from .queue import ZooKeeperPlace
    from .session import Wakeup

__all__ = ["NextWait", "NodeWatch", "PredecessorWatch"]


class NodeWatch:
    """The watch on our own node, from the wait that set it to the end of the grant.

    Before the grant, an event means our node may be gone (``changed`` turns True and
    ``wake`` is set); once :meth:`hand_to` has run, events go to the grant's watch."""

    __slots__ = ("changed", "entry", "grant", "wake")
    runs_at_once: Final = True  # never blocks (see .kazoo_hooks.AT_ONCE)

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.changed = False
        self.grant: ZooKeeperGrant | None = None
        self.wake: Wakeup | None = None

    def __call__(self, event: Any) -> None:  # kazoo's callback thread: never block
        grant = self.grant
        if grant is not None:
            grant.watch(event)
            return
        self.changed = True
        wake = self.wake
        if wake is not None:
            wake.set()

    def hand_to(self, grant: ZooKeeperGrant) -> None:
        """From now on the grant owns this watch. If our node changed meanwhile, the grant
        is checked at once (the monitor verifies it and reports it lost if it is gone)."""
        self.grant = grant
        if self.changed:
            grant.watch(None)
        else:
            grant.armed = True


class PredecessorWatch:
    """The watch on the predecessor of a waiter that is next in line: sets ``woke``.
    ``first`` turns True when the predecessor's node was deleted while our own node had
    not changed."""

    __slots__ = ("first", "mine", "woke")
    runs_at_once: Final = True  # never blocks (see .kazoo_hooks.AT_ONCE)

    def __init__(self, mine: NodeWatch, woke: Wakeup) -> None:
        self.mine = mine
        self.first = False
        self.woke = woke
        mine.wake = woke

    def __call__(self, event: Any) -> None:  # kazoo's callback thread: never block
        if getattr(event, "type", None) == EventType.DELETED and not self.mine.changed:
            self.first = True
        self.woke.set()


class NextWait:
    """One wait as the next in line (both front ends): the watch on our node ``mine`` (the
    one given, if it still watches this entry unchanged, else a new one) and the watch
    on the predecessor, which sets ``woke``.

    Making it sends the ``exists`` that sets ``mine`` and the predecessor's at once, in
    one round trip and one wake-up of kazoo's thread (see :mod:`.wakes`); the front end
    collects them (``start``, described by ``what``, then ``own``). It waits on ``woke``
    only if :meth:`watching` holds for the two answers; afterwards :attr:`first` tells
    whether the wait made us first."""

    __slots__ = ("mine", "own", "place", "start", "watch", "what")

    def __init__(self, client: Any, epoch: Callable[[], int], place: ZooKeeperPlace, parent: str,
                 mine: NodeWatch | None, woke: Wakeup) -> None:
        entry = place.entry
        if mine is None or mine.entry != entry or mine.changed:
            mine = NodeWatch(entry)
        self.place = place
        self.mine = mine
        self.watch = PredecessorWatch(mine, woke)
        path = f"{parent}/{place.predecessor}"
        self.what = f"watch {path} and {entry.path}"
        watch = self.watch

        def own() -> Any:
            return client.exists_async(entry.path, watch=mine)

        def predecessor() -> Any:
            return client.exists_async(path, watch=watch)

        sent_on = epoch()
        with wakes_together(client) as sent:  # both queued, then kazoo's thread woken once
            sent += (own(), predecessor())
        self.own = collector(epoch, sent_on, sent[0], own)
        self.start = collector(epoch, sent_on, sent[1], predecessor)

    @property
    def woke(self) -> Wakeup:
        return self.watch.woke

    @property
    def first(self) -> bool:
        return self.watch.first

    def watching(self, stat: Any, own_stat: Any) -> bool:
        """From the answers to the predecessor's and our ``exists``: True when both nodes
        exist, ours as the same node (else look lists the queue at once)."""
        return stat is not None and own_stat is not None and int(own_stat.czxid) == self.place.entry.czxid
