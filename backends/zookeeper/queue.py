"""The contender queue on ZooKeeper.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import (
    NoNodeError,
)

from fencing_coord.errors import (
    BackendUnavailable,
    FencingCoordError,
    TokenSpaceExhausted,
)

from .names import _KIND_WORDS, _NONCE_LENGTH, _Contender, _parse_contender, _queue_order, _serial_distance
from .session import _OutcomeUnknown, _same, _Session, _Stat

_log = logging.getLogger(__name__)



class _Gone(Exception):
    """Our contender node no longer exists (session expired, deleted out of band)."""


@dataclass(frozen=True)
class _Entry:
    """Our place in one queue."""

    parent: str
    node: str
    seq: int
    czxid: int
    owner: int  # the session that owns the ephemeral node

    @property
    def path(self) -> str:
        return f"{self.parent}/{self.node}"


@dataclass(frozen=True)
class _Position:
    predecessor: str | None  # child to wait on; None: first in the queue
    parent_czxid: int


@dataclass(frozen=True)
class _Member:
    """A contender as others see it: describe(), an election's leader."""

    contender: _Contender
    data: bytes
    czxid: int


class _Janitor:
    """Deletes nodes of ours that nobody will use: created after their caller gave up,
    left by a withdrawal that failed, or belonging to grants reported lost while the
    session lived on. The backend's monitor thread does the work."""

    def discard(self, path: str, owner: int | None) -> None:
        raise NotImplementedError

    def sweep(self, parent: str, nonce: str) -> None:
        raise NotImplementedError


class _ContenderQueue:
    """The fair-queue recipe on one session: enqueue, find the predecessor by integer
    sequence number, watch only it, re-check after waking, withdraw.

    ``kind`` prefixes node names (``lock``, ``candidate``) so several recipes share the
    code but never a parent.
    """

    def __init__(self, session: _Session, janitor: _Janitor, kind: str, window: int) -> None:
        self.session = session
        self.janitor = janitor
        self.kind = kind
        self.window = window

    def enqueue(self, parent: str, data: bytes) -> _Entry:
        """Create our ephemeral-sequential node under ``parent`` (made if missing)."""
        client = self.session.client
        nonce = os.urandom(_NONCE_LENGTH // 2).hex()
        prefix = f"{parent}/{self.kind}-{nonce}-"
        limit = time.monotonic() + self.session.timeout

        def late(result: Any) -> None:
            # The create was abandoned but may still succeed; never leave it behind.
            if result.successful():
                path, stat = result.value
                self.janitor.discard(path, int(stat.ephemeralOwner))

        while True:
            try:
                path, stat = self.session.request(
                    f"join the queue of {parent}",
                    lambda: client.create_async(prefix, data, ephemeral=True, sequence=True, makepath=True,
                                                include_data=True),
                    budget=max(0.0, limit - time.monotonic()), idempotent=False, on_abandon=late,
                )
            except _OutcomeUnknown:
                # The connection dropped with the create in flight. On the same session the
                # node may exist: find it by its nonce. On a new session it died with the old one.
                found = self._find(parent, nonce, limit)
                if found is not None:
                    return found
                continue
            except BackendUnavailable:
                self.janitor.sweep(parent, nonce)
                raise
            node = path.rsplit("/", 1)[1]
            contender = _parse_contender(node, self.kind)
            if contender is None:  # pragma: no cover - ZooKeeper names it for us
                raise BackendUnavailable(f"ZooKeeper named our node {path!r}, which is not <prefix><int>")
            return _Entry(parent, node, contender.seq, int(stat.czxid), int(stat.ephemeralOwner))

    def _find(self, parent: str, nonce: str, limit: float) -> _Entry | None:
        client = self.session.client
        try:
            children = self.session.request(f"look for our node in {parent}", lambda: client.get_children_async(parent),
                                            budget=max(0.0, limit - time.monotonic()), expected=(NoNodeError,))
        except NoNodeError:
            return None
        for child in children:
            contender = _parse_contender(child, self.kind)
            if contender is not None and contender.nonce == nonce:
                stat = self.session.request(f"stat {parent}/{child}",
                                            functools.partial(client.exists_async, f"{parent}/{child}"))
                if stat is not None:
                    return _Entry(parent, child, contender.seq, int(stat.czxid), int(stat.ephemeralOwner))
        return None

    def position(self, entry: _Entry, budget: float | None = None) -> _Position:
        """Our place now: the predecessor to wait on, or None when we are first.

        Raises :class:`_Gone` when our node has vanished and :class:`TokenSpaceExhausted`
        (after withdrawing) when the queue's sequence window is used up.
        """
        client = self.session.client
        try:
            children, raw_stat = self.session.request(
                f"read the queue of {entry.parent}",
                lambda: client.get_children_async(entry.parent, include_data=True),
                budget=budget, expected=(NoNodeError,),
            )
        except NoNodeError:
            raise _Gone(f"{entry.parent} no longer exists") from None
        parent_stat = _Stat.of(raw_stat)
        if entry.node not in children:
            raise _Gone(f"{entry.path} no longer exists")
        if parent_stat.data_length > 0:
            self.withdraw(entry)
            raise self._exhausted(entry.parent, self._mark(entry.parent))
        contenders = [c for c in (_parse_contender(child, self.kind) for child in children) if c is not None]
        distances = [_serial_distance(c.seq, entry.seq) for c in contenders]
        if any(abs(d) > self.window for d in distances):
            note = (f"a live contender is {max(abs(d) for d in distances)} sequence numbers away from "
                    f"{entry.node}; the window is {self.window}")
            self._set_mark(entry.parent, note)
            self.withdraw(entry)
            raise self._exhausted(entry.parent, note)
        before = [(d, c) for d, c in zip(distances, contenders, strict=True) if d < 0]
        predecessor = max(before, key=lambda pair: pair[0])[1].node if before else None
        return _Position(predecessor, parent_stat.czxid)

    def wait(self, entry: _Entry, predecessor: str, deadline: float | None) -> None:
        """Watch ``predecessor`` and return when it is gone, the connection changed, or
        ``deadline`` passed (the caller re-checks its position in every case)."""
        woke = threading.Event()

        def watch(_event: Any) -> None:  # kazoo's thread: just wake the waiter
            woke.set()

        stat = self.session.request(
            f"watch {entry.parent}/{predecessor}",
            lambda: self.session.client.exists_async(f"{entry.parent}/{predecessor}", watch=watch),
            budget=self.budget(deadline),
        )
        if stat is None:
            return
        self.session.wait_for(woke, None if deadline is None else max(0.0, deadline - time.monotonic()))

    def withdraw(self, entry: _Entry) -> bool:
        """Delete our node; True if it still existed. Never raises: a node that cannot be
        deleted now is handed to the janitor."""
        try:
            self.session.request(f"withdraw {entry.path}", lambda: self.session.client.delete_async(entry.path),
                                 expected=(NoNodeError,))
            return True
        except NoNodeError:
            return False
        except FencingCoordError as exc:
            _log.warning("could not delete %s now (%s); it will be deleted once connected", entry.path, exc)
            self.janitor.discard(entry.path, entry.owner)
            return True

    def members(self, parent: str) -> list[_Member]:
        """The parent's contenders in queue order, with their data (read again when one
        leaves while they are read, so the first one listed was really first). Like
        :meth:`head`, the listing follows a pipelined ``sync``, so it reflects every
        write acknowledged to any client before the call."""
        client = self.session.client
        members: list[_Member] = []

        def listing() -> Any:
            client.sync_async(parent)
            return client.get_children_async(parent)

        for _ in range(10):
            try:
                children = self.session.request(f"read the queue of {parent}", listing, expected=(NoNodeError,))
            except NoNodeError:
                return []
            ordered = _queue_order([c for c in (_parse_contender(x, self.kind) for x in children) if c is not None])
            # Send every read before waiting for any: one round trip, not one per contender.
            pending = [client.get_async(f"{parent}/{c.node}") for c in ordered]
            members = []
            for contender, result in zip(ordered, pending, strict=True):
                try:
                    data, stat = self.session.request(f"read {parent}/{contender.node}",
                                                      functools.partial(_same, result), expected=(NoNodeError,))
                except NoNodeError:
                    break
                members.append(_Member(contender, bytes(data), int(stat.czxid)))
            else:
                return members
        return members

    def head(self, parent: str) -> _Member | None:
        """The parent's first contender with its data, or None when there is none.

        Two round trips: ``sync`` pipelined with ``getChildren`` (requests of one session
        are served in order, so the listing reflects every write acknowledged to anyone
        before this call, even when our server is a lagging follower), then ``getData``
        of the first contender; listed again if that one left in between (each retry
        follows a real departure)."""
        client = self.session.client

        def listing() -> Any:
            client.sync_async(parent)
            return client.get_children_async(parent)

        while True:
            try:
                children = self.session.request(f"read the queue of {parent}", listing, expected=(NoNodeError,))
            except NoNodeError:
                return None
            ordered = _queue_order([c for c in (_parse_contender(x, self.kind) for x in children) if c is not None])
            if not ordered:
                return None
            first = f"{parent}/{ordered[0].node}"
            try:
                data, stat = self.session.request(f"read {first}", functools.partial(client.get_async, first),
                                                  expected=(NoNodeError,))
            except NoNodeError:
                continue
            return _Member(ordered[0], bytes(data), int(stat.czxid))

    def budget(self, deadline: float | None) -> float:
        # A waiter rides out a connection loss until its deadline, and at least `timeout`.
        if deadline is None:
            return float("inf")
        return max(self.session.timeout, deadline - time.monotonic())

    def _mark(self, parent: str) -> str:
        try:
            data, _ = self.session.request(f"read {parent}", lambda: self.session.client.get_async(parent))
            return bytes(data).decode("utf-8", "replace")
        except (FencingCoordError, NoNodeError):
            return "(the mark could not be read)"

    def _set_mark(self, parent: str, note: str) -> None:
        text = f"fencing-coord: sequence window exhausted: {note}".encode()
        try:
            self.session.request(f"mark {parent} exhausted", lambda: self.session.client.set_async(parent, text))
        except FencingCoordError as exc:  # the refusal stands; the next contender marks it
            _log.warning("could not mark %s exhausted: %s", parent, exc)

    def _exhausted(self, parent: str, note: str) -> TokenSpaceExhausted:
        what = _KIND_WORDS.get(self.kind, (self.kind, self.kind))[1]
        return TokenSpaceExhausted(
            f"{what} queue {parent} cannot order its contenders safely any more ({note}); it refuses every "
            f"attempt from now on. To continue, delete that znode while nobody holds, leads or waits in it "
            f"(zkCli.sh deleteall {parent}): tokens then continue above every earlier one."
        )

