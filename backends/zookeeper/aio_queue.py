"""The fair queue on ZooKeeper for asyncio: :class:`AsyncZooKeeperQueue`, the driver
:func:`fencing_coord.fairqueue.await_in_line` runs. The recipe, node names and rules of
:class:`.queue.ZooKeeperQueue` (its ``position`` reads a listing the same way, and the
handoff from the predecessor's deletion event is its :class:`.handoff.NextWait`, the
listing sent at that event its :class:`.listing_at_event.ListingAtEvent`); a waiter
waits on an ``exists`` watch that sets an asyncio event, not in a thread."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from kazoo.exceptions import NoNodeError

from fencing_coord.aio.signals import LoopSignal
from fencing_coord.errors import FencingCoordError
from fencing_coord.fairqueue import EntryGone

from .aio_session import AsyncRequests, joined
from .grant import Entry, ZooKeeperGrant
from .kazoo_results import kazoo_error
from .names import contenders
from .queue import Exhausted, ZooKeeperPlace, ZooKeeperQueue, position
from .session import RETRYABLE, OutcomeUnknown, Stat

__all__ = ["AsyncZooKeeperQueue"]

_log = logging.getLogger(__name__)


def _wake_unless_there(stat: Any, woke: LoopSignal) -> None:
    """``stat``'s answer is in (called on kazoo's connection thread, or on the loop's if
    it was in already): wake the waiter unless it says the watched node exists."""
    if not stat.successful() or stat.value is None:
        woke.set()


class AsyncZooKeeperQueue:
    """One acquisition or campaign (``line`` says which queue, what data, whose grant)."""

    __slots__ = ("line", "requests")

    def __init__(self, requests: AsyncRequests, line: ZooKeeperQueue) -> None:
        self.requests = requests
        self.line = line

    async def enqueue(self, exclusive: bool) -> ZooKeeperPlace:
        entry = await self._create()
        try:
            return await self._position(entry)
        except EntryGone:
            raise
        except BaseException:
            await self.withdraw_entry(entry)
            raise

    async def look(self, place: ZooKeeperPlace) -> ZooKeeperPlace:
        return self.line.handoff(place) or await self._position(place.entry)

    async def wait(self, place: ZooKeeperPlace, deadline: float | None) -> None:
        if place.predecessor is None:
            return
        line, session = self.line, self.line.session
        woke = LoopSignal()
        if place.alone:  # the deletion event may make us first (see .handoff)
            waiting = line.next_wait(place, woke)
            stat = await self.requests.request(waiting.what, waiting.start, budget=line._budget())
            own_stat = await self.requests.request(waiting.what, waiting.own, budget=line._budget())
            if waiting.watching(stat, own_stat):  # else gone already: look lists the queue
                await self._wait(woke, deadline)
                line.waited(waiting)
            return

        # The exists that sets the watch is not awaited on its own: its answer wakes the
        # waiter only if the predecessor is gone already or it failed. A predecessor
        # still there costs the loop no pass: the waiter sleeps until the event, whose
        # listing wakes it. After the wait, a failure that is not a lost connection is
        # raised as request() raises it; a lost connection is ridden out by look, whose
        # listing request() waits for the next one.
        watch = line.watch_predecessor(woke)  # the listing goes out at the event; woke once answered
        path = f"{line.parent}/{place.predecessor}"
        what = f"watch {path}"
        await self.requests.connected(what, time.monotonic() + line._budget(), None, newer_than=None)
        stat = session.client.exists_async(path, watch=watch)
        stat.notify(functools.partial(_wake_unless_there, stat, woke))
        try:
            await self._wait(woke, deadline)
        finally:
            watch.disarm()  # an event after the wait sends no listing
        if stat.ready() and not stat.successful() and not isinstance(stat.exception, RETRYABLE):
            raise kazoo_error(what, stat.exception) from stat.exception

    async def _wait(self, woke: LoopSignal, deadline: float | None) -> None:
        """Wait for ``woke``, a change of connection state or close, until ``deadline``
        (as :meth:`.session.Session.wait_for`)."""
        session = self.line.session
        if not session.add_wakeup(woke):
            return
        try:
            await woke.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        finally:
            session.remove_wakeup(woke)

    async def withdraw(self, place: ZooKeeperPlace) -> bool:
        return await self.withdraw_entry(place.entry)

    def claim(self, place: ZooKeeperPlace) -> ZooKeeperGrant:
        return self.line.claim(place)

    # -- the round trips ---------------------------------------------------------------------

    async def _create(self) -> Entry:
        """Create our ephemeral-sequential node under the parent (made if missing)."""
        line = self.line
        nonce, create, limit = line.create_plan()

        def start() -> Any:  # the create's answer and the listing's behind it in one hop
            created = create()
            behind = line.behind
            return created if behind is None else joined(line.session.client.handler, created, behind.result)

        while True:
            try:
                path, stat = await self.requests.request(f"join the queue of {line.parent}", start,
                                                         budget=max(0.0, limit - time.monotonic()), idempotent=False,
                                                         on_abandon=line.late)
            except OutcomeUnknown:
                found = await self._find(nonce, limit)  # our node, if the create was applied
                if found is not None:
                    return found
                continue
            except BaseException:  # unreachable, or cancelled with the create in flight
                line.monitor.sweep(line.parent, nonce)
                raise
            return line.created(path, stat)

    async def _find(self, nonce: str, limit: float) -> Entry | None:
        line = self.line
        client = line.session.client
        try:
            children = await self.requests.request(f"look for our node in {line.parent}",
                                                   lambda: client.get_children_async(line.parent),
                                                   budget=max(0.0, limit - time.monotonic()),
                                                   expected=(NoNodeError,))
        except NoNodeError:
            return None
        for contender in contenders(children, line.kind):
            if contender.nonce == nonce:
                path = f"{line.parent}/{contender.node}"
                stat = await self.requests.request(f"stat {path}", lambda: client.exists_async(path),  # noqa: B023
                                                   budget=max(0.0, limit - time.monotonic()))
                if stat is not None:
                    return Entry(line.parent, contender.node, contender.seq, int(stat.czxid),
                                 int(stat.ephemeralOwner))
        return None

    async def _position(self, entry: Entry) -> ZooKeeperPlace:
        line = self.line
        client = line.session.client
        listed = line.listed_behind(entry)  # answered with the create, if sent behind it
        if listed is None:
            try:
                children, raw_stat = await self.requests.request(f"read the queue of {entry.parent}",
                                                                 line.listing_start(),
                                                                 budget=line._budget(), expected=(NoNodeError,))
            except NoNodeError:
                raise EntryGone(f"{entry.parent} no longer exists") from None
            listed = children, Stat.of(raw_stat)
        found = position(*listed, entry, line.kind, line.window)
        if not isinstance(found, Exhausted):
            return found
        note = found.note
        try:
            if note is None:
                data, _ = await self.requests.request(f"read {line.parent}", lambda: client.get_async(line.parent))
                note = bytes(data).decode("utf-8", "replace")
            else:
                mark = f"fencing-coord: sequence window exhausted: {note}".encode()
                await self.requests.request(f"mark {line.parent} exhausted",
                                            lambda: client.set_async(line.parent, mark))
        except (FencingCoordError, NoNodeError) as exc:  # the refusal stands either way
            _log.warning("reading or writing the exhausted mark of %s failed: %s", line.parent, exc)
        raise line._exhausted(note or "(the mark could not be read)")

    async def withdraw_entry(self, entry: Entry) -> bool:
        """Delete our node; True if it still existed. Never raises a service error: a
        node that cannot be deleted now is handed to the monitor's janitor."""
        start = functools.partial(self.line.session.client.delete_async, entry.path)
        try:
            await self.requests.request(f"withdraw {entry.path}", start, budget=self.line.budget.withdrawal(),
                                        expected=(NoNodeError,))
        except (NoNodeError, FencingCoordError) as exc:
            return self.line.not_deleted(entry, exc)
        return True
