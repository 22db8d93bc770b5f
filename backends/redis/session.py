"""A backend's session: its contenders in Redis queues, kept alive by one thread.

Every contender (waiting or holding) is a Redis hash that expires ``ttl`` after it was
last refreshed. One keepalive thread per backend refreshes all of them every ``ttl/3``
seconds with one compare-and-pexpire script: one round trip per round, however many
locks and waits the backend has. A contender the script reports gone (expired while
this process was paused, deleted out of band, or no longer first although it held) is
reported: its waiter is woken (it queues again), its grant is marked lost.

Each grant also keeps a local lease: the time the last successful refresh was sent
plus ``ttl``. Past it, Redis may have expired the contender, so the grant reads as lost
(:meth:`Session.expired`) even before the keepalive gets an answer; a Redis that does
not answer for ``ttl`` makes every grant lost the same way.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fencing_coord.errors import FencingCoordError
from fencing_coord.grant import Grant

from .connection import RedisConnection
from .layout import WAKE_PREFIX, QueueKeys
from .scripts import KEEPALIVE, LEAVE, Script

__all__ = ["Entry", "Session"]

_log = logging.getLogger(__name__)


@dataclass(eq=False)
class Entry:
    """One contender of this backend in one queue."""

    id: str
    keys: QueueKeys
    #: The channel telling observers of a change ('' for a lock: nobody observes it).
    changed: str
    #: Set when this contender may have become first, or was found gone.
    wake: threading.Event = field(default_factory=threading.Event)
    grant: Grant | None = None
    #: ``time.monotonic()`` when the last refresh that found it alive was sent.
    renewed_at: float = field(default_factory=time.monotonic)
    #: No longer in Redis (as far as this backend knows), or left the queue.
    gone: bool = False


class Session:
    """The contenders of one backend and their keepalive thread."""

    def __init__(self, conn: RedisConnection, keepalive: RedisConnection, ttl: float) -> None:
        self.sid = uuid.uuid4().hex[:16]
        self.wake_channel = WAKE_PREFIX + self.sid
        self.ttl = ttl
        self.px = max(1, round(ttl * 1000))
        self._conn = conn
        self._keepalive_conn = keepalive
        self._entries: dict[str, Entry] = {}
        self._doomed: dict[str, Entry] = {}  # to delete in the background (Redis was unreachable)
        self._mutex = threading.Lock()
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fencing-coord-redis-keepalive-{self.sid}",
                                        daemon=True)
        self._thread.start()

    # -- the registry --------------------------------------------------------------------

    def new_entry(self, keys: QueueKeys, changed: str) -> Entry:
        """A new contender, refreshed from now on (before its script is even sent: the
        keepalive then covers it whatever the script's fate)."""
        entry = Entry(f"{self.sid}.{next(self._ids)}", keys, changed)
        with self._mutex:
            self._entries[entry.id] = entry
        return entry

    def forget(self, entry: Entry) -> None:
        """Stop refreshing ``entry`` (it left, or Redis no longer has it)."""
        with self._mutex:
            self._entries.pop(entry.id, None)
            entry.gone = True

    def doom(self, entry: Entry) -> None:
        """Stop refreshing ``entry`` and delete it in the background: its owner could not
        reach Redis to delete it (it expires within ``ttl`` in any case)."""
        with self._mutex:
            self._entries.pop(entry.id, None)
            entry.gone = True
            self._doomed[entry.id] = entry

    def wake(self, entry_id: str) -> None:
        """A wake-up message for contender ``entry_id`` arrived."""
        with self._mutex:
            entry = self._entries.get(entry_id)
        if entry is not None:
            entry.wake.set()

    def wake_all(self) -> None:
        """Wake every waiter (messages may have been missed, or the backend closes)."""
        with self._mutex:
            entries = list(self._entries.values())
        for entry in entries:
            entry.wake.set()

    def entries(self) -> list[Entry]:
        with self._mutex:
            return list(self._entries.values())

    def expired(self, entry: Entry) -> bool:
        """True when ``entry``'s local lease has run out (see the module docstring)."""
        return time.monotonic() >= entry.renewed_at + self.ttl

    # -- refreshing ------------------------------------------------------------------------

    def renew(self, entry: Entry) -> bool:
        """Refresh ``entry`` now; False (reported as gone) when Redis no longer has it."""
        sent = time.monotonic()
        [alive] = self._conn.run(KEEPALIVE, _keys([entry]), self._argv([entry]))
        return self._settle([entry], [alive], sent)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._round()
            except Exception:
                _log.exception("keepalive round of session %s failed", self.sid)

    def _round(self) -> None:
        with self._mutex:
            entries = list(self._entries.values())
            doomed = list(self._doomed.values())
        if not entries and not doomed:
            return
        calls: list[tuple[Script, list[str], list[Any]]] = []
        if entries:
            calls.append((KEEPALIVE, _keys(entries), self._argv(entries)))
        calls += [(LEAVE, [e.keys.queue, e.keys.entry(e.id)], self.leave_argv(e)) for e in doomed]
        sent = time.monotonic()
        try:
            results = self._keepalive_conn.pipeline("keepalive", calls)
        except FencingCoordError as exc:
            _log.warning("keepalive of session %s: %s", self.sid, exc)
            for entry in entries:
                if self.expired(entry):
                    self._report_gone(entry, f"lease expired: Redis did not answer for {self.ttl:g} s")
            return
        with self._mutex:
            for entry in doomed:
                self._doomed.pop(entry.id, None)
        if entries:
            self._settle(entries, results[0], sent)

    def _settle(self, entries: list[Entry], alive: list[Any], sent: float) -> bool:
        everything_alive = True
        for entry, ok in zip(entries, alive, strict=True):
            if ok == 1:
                entry.renewed_at = max(entry.renewed_at, sent)
            else:
                everything_alive = False
                self._report_gone(entry, "lease expired: its key in Redis was gone (or no longer first) at renewal")
        return everything_alive

    def _report_gone(self, entry: Entry, reason: str) -> None:
        self.forget(entry)
        entry.wake.set()
        if entry.grant is not None:
            entry.grant.mark_lost(reason)

    def _argv(self, entries: list[Entry]) -> list[Any]:
        argv: list[Any] = [self.sid, self.px]
        for entry in entries:
            argv += [entry.id, 1 if entry.grant is not None else 0]
        return argv

    def leave_argv(self, entry: Entry) -> list[Any]:
        """LEAVE's ARGV for ``entry``."""
        return [entry.keys.base, entry.id, self.sid, WAKE_PREFIX, entry.changed]

    # -- the end ---------------------------------------------------------------------------

    def close(self) -> list[Entry]:
        """Stop the keepalive; return every contender still registered (forgotten now)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        with self._mutex:
            entries = list(self._entries.values()) + list(self._doomed.values())
            self._entries.clear()
            self._doomed.clear()
        for entry in entries:
            entry.gone = True
            entry.wake.set()
        return entries


def _keys(entries: list[Entry]) -> list[str]:
    keys: list[str] = []
    for entry in entries:
        keys += [entry.keys.entry(entry.id), entry.keys.queue]
    return keys
