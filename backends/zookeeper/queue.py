"""The fair queue on ZooKeeper: :class:`ZooKeeperQueue`, the driver that
:func:`fencing_coord.fairqueue.wait_in_line` runs for every lock and election.

The recipe (ours, not kazoo's ``Lock``): a contender creates its ephemeral-sequential node
(``_c_<nonce>-lock-<seq>``; see :mod:`.names`; the parent made if missing), lists the
parent's children, and holds the lock when no contender's sequence number precedes its
own -- ours, and those of kazoo, Curator and ZooKeeper's recipes (see :mod:`.names` for
the order and the names); otherwise it watches only its immediate predecessor and,
woken, lists the children again (its own node may have vanished: it then joins the queue
anew). An acquisition costs three requests in two round trips: the create and the
listing sent behind it (see :mod:`.behind`), and the delete of release.
A waiter whose only older contender is its predecessor is granted from the deletion event
itself, without listing again (see :mod:`.handoff`).

Limits of the sequence counter. The counter (taken from the parent's ``cversion``; it
advances with every child created, and with deletions too depending on the server's
timing) is a signed 32-bit value that wraps at 2^31-1; serial arithmetic orders
contenders correctly across the wrap as long as all live contenders of a queue lie within
2^31 sequence numbers of each other. The queue refuses before that can fail: when a
contender finds another live contender more than ``sequence_window`` (default 2^30)
sequence numbers away -- a holder or waiter that has lived through a billion queue
changes -- it marks the parent as exhausted (writes a note into the parent's data, which
is otherwise empty), withdraws, and raises :class:`TokenSpaceExhausted`; every later
attempt on that queue sees the mark and refuses too, so an ambiguous order is never acted
on. To recover, delete the queue's parent node while nobody holds or waits in it
(``zkCli.sh deleteall /fencing-coord/<ns>/locks/<name>``): tokens continue above every
earlier one (see :mod:`.grant`). The library itself never deletes a parent.

A parent deleted out of band (its children must be deleted first, so every holder's node
goes too): each holder's node watch fires and the monitor reports its grant lost, with a
reason that names the deleted or recreated parent; a waiter joins the new parent's queue.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

from kazoo.exceptions import NoNodeError

from fencing_coord.deadlines import RequestBudget
from fencing_coord.errors import BackendUnavailable, FencingCoordError, TokenSpaceExhausted
from fencing_coord.fairqueue import EntryGone

from .behind import ListingBehind
from .grant import Entry, ZooKeeperGrant
from .makepath import create_making_parents
from .monitor import Monitor
from .names import (
    contenders,
    kind_words,
    new_nonce,
    node_prefix,
    parse_contender,
    queue_seqs,
    serial_distance,
)
from .session import OutcomeUnknown, Stat
from .wakes import wakes_together

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    from .handoff import NextWait, NodeWatch  # imported by the first wait: see next_wait
    from .listing_at_event import ListingAtEvent
    from .session import Wakeup
else:
    from fencing_coord.typeless import NamedTuple

__all__ = ["Exhausted", "ZooKeeperPlace", "ZooKeeperQueue", "position"]

_log = logging.getLogger(__name__)

class ZooKeeperPlace(NamedTuple):
    """Our node in a queue and what precedes it, as last listed."""

    entry: Entry
    predecessor: str | None  # the child to wait on; None: first in the queue
    parent_czxid: int
    alone: bool = False  # the predecessor is the only older contender

    @property
    def first(self) -> bool:
        return self.predecessor is None


class Exhausted(NamedTuple):
    """The queue's sequence window is used up: ``note`` says why, to be written into the
    parent as its mark; None when the parent was marked already (read the mark)."""

    note: str | None


def position(children: list[str], parent_stat: Stat, entry: Entry, kind: str,
             window: int) -> ZooKeeperPlace | Exhausted:
    """Our place, from a listing of the parent (``children``, its stat). Raises EntryGone
    when our node is not among them."""
    if entry.node not in children:
        raise EntryGone(f"{entry.path} no longer exists")
    if parent_stat.data_length > 0:
        return Exhausted(None)
    mine = entry.seq
    predecessor: str | None = None
    nearest = older = farthest = 0
    for seq, child in queue_seqs(children, kind):
        distance = serial_distance(seq, mine)
        farthest = max(farthest, abs(distance))
        if distance < 0:
            older += 1
            if predecessor is None or distance > nearest:
                predecessor, nearest = child, distance
    if farthest > window:
        return Exhausted(f"a live contender is {farthest} sequence numbers away from {entry.node}; "
                         f"the window is {window}")
    return ZooKeeperPlace(entry, predecessor, parent_stat.czxid, alone=older == 1)


class ZooKeeperQueue:
    """The queue driver of one acquisition or campaign (see :mod:`fencing_coord.fairqueue`):
    contender nodes of ``kind`` under ``parent``, holding ``data``; the grant is ``name``'s,
    held by ``holder``. ``deadline`` bounds every request, a connection loss ridden out
    included (see :mod:`fencing_coord.deadlines`)."""

    __slots__ = ("at_event", "behind", "budget", "data", "deadline", "handed", "holder", "kind", "mine", "monitor",
                 "name", "parent", "session", "window")

    def __init__(self, monitor: Monitor, kind: str, window: int, *, parent: str, name: str, holder: str,
                 data: bytes, deadline: float | None) -> None:
        self.monitor = monitor
        self.session = monitor.session
        self.kind = kind
        self.window = window
        self.parent = parent
        self.name = name
        self.holder = holder
        self.data = data
        self.deadline = deadline
        self.budget = RequestBudget.until(deadline, self.session.timeout)
        self.mine: NodeWatch | None = None  # the watch on our own node, if set
        self.handed: ZooKeeperPlace | None = None  # a place made first by its predecessor's deletion
        self.behind: ListingBehind | None = None  # the listing sent behind our last create
        self.at_event: ListingAtEvent | None = None  # the last wait's watch, which lists the queue at its event

    def enqueue(self, exclusive: bool) -> ZooKeeperPlace:
        """Create our node and list the queue (one round trip: the listing goes out behind
        the create, see :mod:`.behind`). Never refuses early: a try-once contender queues
        and withdraws like any other (``exclusive`` unused)."""
        entry = self._create()
        try:
            return self._position(entry)
        except EntryGone:
            raise
        except BaseException:
            self._delete(entry)
            raise

    def look(self, place: ZooKeeperPlace) -> ZooKeeperPlace:
        """Our place now: first without a request when the wait ended on the deletion of
        a predecessor that was the only older contender (see :mod:`.handoff`); else
        listed (one round trip)."""
        return self.handoff(place) or self._position(place.entry)

    def handoff(self, place: ZooKeeperPlace) -> ZooKeeperPlace | None:
        """``place`` made first, once, when the wait on it ended on the deletion of its
        predecessor that was the only older contender (see :mod:`.handoff`); else None."""
        if self.handed is not place:
            return None
        self.handed = None
        return ZooKeeperPlace(place.entry, None, place.parent_czxid)

    def wait(self, place: ZooKeeperPlace, deadline: float | None) -> None:
        """Watch the predecessor and return when it is gone, the connection changed, the
        backend closed or ``deadline`` passed."""
        if place.predecessor is None:
            return
        if place.alone:
            self._wait_next(place, deadline)
            return
        woke = threading.Event()
        watch = self.watch_predecessor(woke)
        path = f"{self.parent}/{place.predecessor}"
        try:
            stat = self.session.request(f"watch {path}", lambda: self.session.client.exists_async(path, watch=watch),
                                        budget=self._budget())
            if stat is not None:
                self.session.wait_for(woke, None if deadline is None else max(0.0, deadline - time.monotonic()))
        finally:
            watch.disarm()  # an event after the wait sends no listing

    def withdraw(self, place: ZooKeeperPlace) -> bool:
        return self._delete(place.entry)

    def claim(self, place: ZooKeeperPlace) -> ZooKeeperGrant:
        # A wait that watched our node hands that watch to the grant: the monitor then has
        # nothing to set (see :meth:`.handoff.NodeWatch.hand_to`).
        mine = self.mine if self.mine is not None and self.mine.entry == place.entry else None
        grant = self.monitor.register(self.name, self.holder, place.entry, place.parent_czxid,
                                      watched=mine is not None)
        if grant is None:
            raise EntryGone("the session changed while acquiring")
        if mine is not None:
            mine.hand_to(grant)
        return grant

    def _wait_next(self, place: ZooKeeperPlace, deadline: float | None) -> None:
        """Wait as the next in line: watch our own node and the predecessor's in one
        round trip; when the predecessor's deletion makes us first, note it for
        :meth:`look` (see :mod:`.handoff`)."""
        woke = threading.Event()
        waiting = self.next_wait(place, woke)
        stat = self.session.request(waiting.what, waiting.start, budget=self._budget())
        own_stat = self.session.request(waiting.what, waiting.own, budget=self._budget())
        if not waiting.watching(stat, own_stat):
            return  # gone already: look lists the queue
        self.session.wait_for(woke, None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.waited(waiting)

    def next_wait(self, place: ZooKeeperPlace, woke: Wakeup) -> NextWait:
        """Start a wait as the next in line (both front ends; see :class:`.handoff.NextWait`)."""
        from .handoff import NextWait  # waiters only: not on the connect + first grant path (issue 13)
        waiting = NextWait(self.session.client, self.session.current_epoch, place, self.parent, self.mine, woke)
        self.mine = waiting.mine
        return waiting

    def watch_predecessor(self, woke: Wakeup) -> ListingAtEvent:
        """The watch for a wait on a predecessor that is not the only older contender (both
        front ends): it lists the queue at its event and sets ``woke``; the next
        :meth:`listing_start` collects that listing (see :mod:`.listing_at_event`)."""
        from .listing_at_event import ListingAtEvent  # waiters only, as NextWait
        self.at_event = ListingAtEvent(self.session.current_epoch, self._listing, woke)
        return self.at_event

    def listing_start(self) -> Callable[[], Any]:
        """The ``start`` of a request for the queue's listing: the one the last wait's
        watch sent at its event, once; else a new one."""
        watch, self.at_event = self.at_event, None
        return self._listing if watch is None else watch.start()

    def waited(self, waiting: NextWait) -> None:
        """The wait ended: if it made us first, :meth:`look` knows without a request."""
        if waiting.first:
            self.handed = waiting.place

    # -- the round trips --------------------------------------------------------------------

    def create_plan(self) -> tuple[str, Callable[[], Any], float]:
        """(nonce, the create request's start, its time limit) of our node's create (both
        front ends): ephemeral-sequential under the parent, made if missing. Each start
        sends the queue's listing right behind the create (:attr:`behind`)."""
        session = self.session
        prefix = node_prefix(self.parent, self.kind, nonce := new_nonce())
        create = functools.partial(create_making_parents, session.client, prefix, self.data, ephemeral=True,
                                   sequence=True, include_data=True)

        def start() -> Any:
            with wakes_together(session.client) as sent:  # both queued before kazoo's thread wakes
                created = create()
                self.behind = ListingBehind.send(session.current_epoch, self._listing)
                sent += (created, self.behind.result)
            return created

        return nonce, start, time.monotonic() + self.budget.request()

    def _listing(self) -> Any:
        return self.session.client.get_children_async(self.parent, include_data=True)

    def listed_behind(self, entry: Entry) -> tuple[list[str], Stat] | None:
        """The listing sent behind ``entry``'s create, once, if it may stand for a fresh
        one (see :meth:`.behind.ListingBehind.take`); else None."""
        behind, self.behind = self.behind, None
        return None if behind is None else behind.take(entry, self.session.current_epoch())

    def late(self, result: Any) -> None:
        """An abandoned create may still succeed: never leave its node behind."""
        if result.successful():
            path, stat = result.value
            self.monitor.discard(path, int(stat.ephemeralOwner))

    def created(self, path: str, stat: Any) -> Entry:
        node = path.rsplit("/", 1)[1]
        contender = parse_contender(node, self.kind)
        if contender is None:  # pragma: no cover - ZooKeeper names it for us
            raise BackendUnavailable(f"ZooKeeper named our node {path!r}, which is not <prefix><int>")
        return Entry(self.parent, node, contender.seq, int(stat.czxid), int(stat.ephemeralOwner))

    def _create(self) -> Entry:
        """Create our ephemeral-sequential node under the parent (made if missing)."""
        nonce, start, limit = self.create_plan()
        while True:
            try:
                path, stat = self.session.request(f"join the queue of {self.parent}", start,
                                                  budget=max(0.0, limit - time.monotonic()), idempotent=False,
                                                  on_abandon=self.late)
            except OutcomeUnknown:
                # The connection dropped with the create in flight. On the same session the
                # node may exist: find it by its nonce. On a new session it died with the old one.
                found = self._find(nonce, limit)
                if found is not None:
                    return found
                continue
            except BackendUnavailable:
                self.monitor.sweep(self.parent, nonce)
                raise
            return self.created(path, stat)

    def _find(self, nonce: str, limit: float) -> Entry | None:
        client = self.session.client
        try:
            children = self.session.request(f"look for our node in {self.parent}",
                                            lambda: client.get_children_async(self.parent),
                                            budget=max(0.0, limit - time.monotonic()), expected=(NoNodeError,))
        except NoNodeError:
            return None
        for contender in contenders(children, self.kind):
            if contender.nonce == nonce:
                path = f"{self.parent}/{contender.node}"
                stat = self.session.request(f"stat {path}", functools.partial(client.exists_async, path),
                                            budget=max(0.0, limit - time.monotonic()))
                if stat is not None:
                    return Entry(self.parent, contender.node, contender.seq, int(stat.czxid),
                                 int(stat.ephemeralOwner))
        return None

    def _position(self, entry: Entry) -> ZooKeeperPlace:
        """Our place now (one round trip, or none after our create: see :mod:`.behind`).
        Raises EntryGone when our node has vanished and TokenSpaceExhausted when the
        queue's sequence window is used up (the caller withdraws)."""
        if self.behind is not None:  # answered right after the create: a drop fails it at once
            self.behind.result.wait(min(self._budget(), self.session.timeout))
        listed = self.listed_behind(entry)
        if listed is None:
            try:
                children, raw_stat = self.session.request(f"read the queue of {entry.parent}", self.listing_start(),
                                                          budget=self._budget(), expected=(NoNodeError,))
            except NoNodeError:
                raise EntryGone(f"{entry.parent} no longer exists") from None
            listed = children, Stat.of(raw_stat)
        found = position(*listed, entry, self.kind, self.window)
        if isinstance(found, Exhausted):
            if found.note is None:
                raise self._exhausted(self._mark())
            self._set_mark(found.note)
            raise self._exhausted(found.note)
        return found

    def _delete(self, entry: Entry) -> bool:
        """Delete our node; True if it still existed. Never raises: a node that cannot be
        deleted now is handed to the monitor's janitor."""
        try:
            self.session.request(f"withdraw {entry.path}", functools.partial(self.session.client.delete_async,
                                                                             entry.path),
                                 budget=self.budget.withdrawal(), expected=(NoNodeError,))
        except (NoNodeError, FencingCoordError) as exc:
            return self.not_deleted(entry, exc)
        return True

    def not_deleted(self, entry: Entry, exc: Exception) -> bool:
        """The delete of our node failed with ``exc``: False if it was gone already;
        else it is handed to the janitor (deleted once connected), and True."""
        if isinstance(exc, NoNodeError):
            return False
        _log.warning("could not delete %s now (%s); it will be deleted once connected", entry.path, exc)
        self.monitor.discard(entry.path, entry.owner)
        return True

    def _budget(self) -> float:
        # A waiter rides out a connection loss until its deadline (without one, for as
        # long as it takes); never beyond it.
        waiting = self.budget.waiting()
        return float("inf") if waiting is None else waiting

    # -- the exhausted mark -----------------------------------------------------------------

    def _mark(self) -> str:
        try:
            data, _ = self.session.request(f"read {self.parent}", lambda: self.session.client.get_async(self.parent))
            return bytes(data).decode("utf-8", "replace")
        except (FencingCoordError, NoNodeError):
            return "(the mark could not be read)"

    def _set_mark(self, note: str) -> None:
        text = f"fencing-coord: sequence window exhausted: {note}".encode()
        try:
            self.session.request(f"mark {self.parent} exhausted",
                                 lambda: self.session.client.set_async(self.parent, text))
        except FencingCoordError as exc:  # the refusal stands; the next contender marks it
            _log.warning("could not mark %s exhausted: %s", self.parent, exc)

    def _exhausted(self, note: str) -> TokenSpaceExhausted:
        what = kind_words(self.kind)[1]
        return TokenSpaceExhausted(
            f"{what} queue {self.parent} cannot order its contenders safely any more ({note}); it refuses every "
            f"attempt from now on. To continue, delete that znode while nobody holds, leads or waits in it "
            f"(zkCli.sh deleteall {self.parent}): tokens then continue above every earlier one."
        )
