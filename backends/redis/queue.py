"""The fair queue on Redis: the :class:`~fencing_coord.fairqueue.QueueDriver` of one lock
or election, and the grant it hands out.

``enqueue`` is one script: it drops dead contenders from the head, INCRs the queue's
token counter and adds the caller under that token, or (``try_acquire``) refuses at
once when anyone holds or waits. The token is the contender's arrival number, so the
queue's order is the tokens' order and a later grant always has a larger token. The
first live contender holds; a waiter sleeps until its backend's listener delivers the
wake-up a script published when it became first, or until the first contender's hash
would expire (a crashed holder publishes nothing), and then looks again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fencing_coord.errors import BackendUnavailable, InvalidArgument, TokenSpaceExhausted
from fencing_coord.fairqueue import EntryGone
from fencing_coord.grant import Grant

from .durability import Durability
from .layout import WAKE_PREFIX, Kind, QueueKeys
from .scripts import ENQUEUE, LEAVE, LOOK, MAX_QUEUE_TOKEN
from .session import Entry

if TYPE_CHECKING:
    from .backend import RedisBackend

__all__ = ["RedisGrant", "RedisPlace", "RedisQueue"]

_log = logging.getLogger(__name__)

# Slack after the first contender's expiry before looking again (Redis expires a key
# lazily, on the first access past its deadline, so no more is needed).
_EXPIRY_SLACK = 0.005


class RedisGrant(Grant):
    """A grant (or election term) of the Redis backend: its contender in the queue."""

    __slots__ = ("entry",)

    def __init__(self, name: str, token: int, holder: str, *, owner: RedisBackend, entry: Entry) -> None:
        super().__init__(name, token, holder, owner=owner, probe=owner._probe)
        self.entry = entry


@dataclass(frozen=True)
class RedisPlace:
    """A contender's place: ``first``, and how long the first contender may live (ms)."""

    entry: Entry
    token: int
    first: bool
    head_pttl: int


class RedisQueue:
    """The queue driver of one lock or election (see :mod:`fencing_coord.fairqueue`)."""

    def __init__(self, backend: RedisBackend, kind: Kind, name: str, value: bytes) -> None:
        self.backend = backend
        self.name = name
        self.keys = QueueKeys.of(backend.namespace, kind, name)
        self.changed = self.keys.changed if kind == "elections" else ""
        self.value = value
        self.what = f"{'lock' if kind == 'locks' else 'election'} {name!r}"

    def enqueue(self, exclusive: bool) -> RedisPlace | None:
        backend = self.backend
        session = backend._session
        entry = session.new_entry(self.keys, self.changed)
        floor = backend._floor.issued_floor(self.keys.base)
        argv = [self.keys.base, entry.id, session.sid, backend.identity, self.value, session.px,
                1 if exclusive else 0, floor, WAKE_PREFIX, self.changed]
        call = (ENQUEUE, [self.keys.queue, self.keys.counter, self.keys.entry(entry.id)], argv)
        policy = backend.durability
        waits = policy.mode is Durability.REPLICAS
        try:
            if waits:  # WAIT counts the writes of its own connection: one pipeline
                results = backend._conn.pipeline("enqueue", [call],
                                                 lambda pipe: pipe.wait(policy.replicas, backend._conn.wait_ms))
            else:
                results = [backend._conn.run(*call)]
        except BaseException:
            session.doom(entry)  # it may exist: the script may have run before the failure
            raise
        status = results[0]
        if status[0] != 1:
            session.forget(entry)
            if status[0] == 0:
                return None
            if status[0] == -1:
                raise backend._floor.regression(backend._conn.label, self.what, int(status[1]), floor)
            raise TokenSpaceExhausted(f"{self.what} has used up the tokens a Redis queue can give exactly"
                                      f" ({MAX_QUEUE_TOKEN}); use another name")
        token = int(status[1])
        place = RedisPlace(entry, token, status[2] == 1, int(status[3]))
        if waits and int(results[1]) < policy.replicas:
            self.withdraw(place)
            raise BackendUnavailable(
                f"{backend._conn.label}: only {results[1]} of {policy.replicas} replica(s) acknowledged token {token}"
                f" of {self.what} within {backend._conn.wait_ms} ms; not granted (durability=replicas)"
            )
        backend._floor.issued(self.keys.base, token)
        if backend.closed:
            self.withdraw(place)
            raise InvalidArgument(f"{backend!r} was closed while {self.what} was being acquired")
        return place

    def look(self, place: RedisPlace) -> RedisPlace:
        backend = self.backend
        if backend.closed:
            raise InvalidArgument(f"{backend!r} was closed while waiting for {self.what}")
        entry = place.entry
        if entry.gone:
            raise EntryGone(self.name)
        status = backend._conn.run(LOOK, [self.keys.queue, self.keys.entry(entry.id)],
                                   [self.keys.base, entry.id, backend._session.sid, WAKE_PREFIX, self.changed])
        if status[0] != 1:
            backend._session.forget(entry)
            raise EntryGone(self.name)
        return RedisPlace(entry, place.token, status[1] == 1, int(status[2]))

    def wait(self, place: RedisPlace, deadline: float | None) -> None:
        waits: list[float] = [self.backend.ttl]
        if deadline is not None:
            waits.append(max(0.0, deadline - time.monotonic()))
        if place.head_pttl >= 0:  # -2: already gone, -1: no expiry (not ours: wait a ttl)
            waits.append(place.head_pttl / 1000 + _EXPIRY_SLACK)
        elif place.head_pttl == -2:
            waits.append(0.0)
        place.entry.wake.wait(min(waits))
        place.entry.wake.clear()  # look() reads the queue next, after this

    def withdraw(self, place: RedisPlace) -> bool:
        entry = place.entry
        session = self.backend._session
        try:  # even when reported gone: LEAVE of a contender already gone changes nothing
            held = self.backend._conn.run(LEAVE, [self.keys.queue, self.keys.entry(entry.id)],
                                          session.leave_argv(entry))
        except BackendUnavailable:
            session.doom(entry)
            raise
        session.forget(entry)
        return bool(held == 1)

    def claim(self, place: RedisPlace) -> RedisGrant:
        backend = self.backend
        entry = place.entry
        if entry.gone:
            raise EntryGone(self.name)
        floor = backend._floor.granted_floor(self.keys.base)
        if place.token < floor:  # equal: a look at the queue saw this very contender first
            self.withdraw(place)
            raise backend._floor.regression(backend._conn.label, self.what, place.token, floor)
        grant = RedisGrant(self.name, place.token, backend.identity, owner=backend, entry=entry)
        backend._floor.granted(self.keys.base, place.token)
        entry.grant = grant
        if entry.gone or backend._session.expired(entry):
            # Reported gone meanwhile, or its lease ran out: not a grant.
            entry.grant = None
            self.withdraw(place)
            raise EntryGone(self.name)
        return grant


def decode_token(raw: Any) -> int:
    """A token as a script returns it (a score's decimal string, or an integer)."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return int(float(text)) if "e" in text or "." in text else int(text)
