"""A backend's pub/sub listener: wake-ups for its waiters, changes for its observers.

One subscriber connection and one thread per backend. The backend's wake channel is
subscribed before the backend serves anything, so no wake-up sent to it can be missed
while it is up; a script publishes there the id of the contender that became first,
and only that contender's waiter is woken (no thundering herd, not even inside one
process). Election observers subscribe to their election's ``changed`` channel; the
subscription is confirmed before :meth:`Listener.watch` returns.

Nothing is published when a leader's hash expires (its process died): each time the
leader is read, its observers are told to look again when it would expire
(:meth:`Listener.recheck`), so a dead leader is noticed within its ``ttl``.

Messages published while the connection was down are lost: after a reconnection every
waiter is woken and every observer told, so each looks again. Waiters also never sleep
past their predecessor's expiry (see the queue driver), so a lost message costs time,
never a stuck queue.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from fencing_coord.errors import BackendUnavailable

from .connection import RedisConnection, mapped

__all__ = ["Listener"]

_log = logging.getLogger(__name__)

# After a leader's expiry, before looking (Redis expires a key on the first access
# past its deadline).
_EXPIRY_SLACK = 0.005


class Received(enum.Enum):
    WAKE = "wake"
    CHANGED = "changed"
    SUBSCRIBED = "subscribed"


@dataclass(frozen=True)
class Message:
    """One pub/sub message, as the listener thread understood it."""

    kind: Received
    channel: str
    data: str


class Listener:
    """Subscribes to ``wake_channel`` (now, confirmed) and runs its thread; calls
    ``on_wake(entry_id)`` for each wake-up and ``on_resync()`` after a reconnection."""

    def __init__(self, conn: RedisConnection, wake_channel: str, on_wake: Callable[[str], None],
                 on_resync: Callable[[], None]) -> None:
        self._conn = conn
        self._wake_channel = wake_channel
        self._on_wake = on_wake
        self._on_resync = on_resync
        self._watchers: dict[str, list[Callable[[], None]]] = {}
        self._confirmed: dict[str, threading.Event] = {}
        self._due: dict[str, float] = {}  # watched channel -> when to tell its watchers anyway
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        client: Any = conn.client  # redis-py's pubsub() is untyped
        self._pubsub = client.pubsub()
        self._subscribe(wake_channel)
        # Nobody reads yet: read the confirmation here, so the wake channel is live
        # before the backend queues anything.
        conn.call("SUBSCRIBE", lambda _: self._await_first_confirmation())
        self._thread = threading.Thread(target=self._run, name=f"fencing-coord-redis-listener-{wake_channel[-16:]}",
                                        daemon=True)
        self._thread.start()

    def _await_first_confirmation(self) -> None:
        while not self._confirmed[self._wake_channel].is_set():
            raw = self._pubsub.get_message(timeout=self._conn.timeout)
            if raw is None:
                raise redis.exceptions.TimeoutError(f"no confirmation of SUBSCRIBE {self._wake_channel}")
            self._handle(raw)

    def _subscribe(self, channel: str) -> None:
        with self._mutex:
            self._confirmed.setdefault(channel, threading.Event())
            with mapped(self._conn.label, "SUBSCRIBE"):
                self._pubsub.subscribe(channel)

    # -- observers --------------------------------------------------------------------------

    def watch(self, channel: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify()`` on every message on ``channel`` (and after reconnections),
        from the listener thread; returns the function that stops it."""
        with self._mutex:
            callbacks = self._watchers.setdefault(channel, [])
            callbacks.append(notify)
            first = len(callbacks) == 1
        def stop() -> None:
            with self._mutex:
                callbacks = self._watchers.get(channel, [])
                if notify in callbacks:
                    callbacks.remove(notify)
                if callbacks or channel not in self._watchers:
                    return
                del self._watchers[channel]
                self._confirmed.pop(channel, None)
                self._due.pop(channel, None)
                try:
                    self._pubsub.unsubscribe(channel)
                except redis.exceptions.RedisError:
                    _log.debug("UNSUBSCRIBE %s failed (the reconnection will not subscribe again)", channel)

        try:
            if first:
                self._subscribe(channel)
            with self._mutex:
                confirmed = self._confirmed.setdefault(channel, threading.Event())
            if not confirmed.wait(self._conn.timeout):
                raise BackendUnavailable(f"{self._conn.label}: Redis did not confirm SUBSCRIBE {channel}")
        except BaseException:
            stop()
            raise
        return stop

    def recheck(self, channel: str, after: float) -> None:
        """Tell ``channel``'s watchers (if any) to look again in ``after`` seconds, unless
        a message or an earlier recheck does first."""
        due = time.monotonic() + max(0.0, after) + _EXPIRY_SLACK
        with self._mutex:
            if channel in self._watchers:
                self._due[channel] = min(due, self._due.get(channel, due))

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        broken = False
        while not self._stop.is_set():
            try:
                raw = self._pubsub.get_message(timeout=self._next_timeout())
            except (redis.exceptions.RedisError, OSError, ValueError) as exc:
                if not self._stop.is_set():
                    _log.debug("pub/sub connection of %s broke: %r", self._conn.label, exc)
                broken = True
                self._stop.wait(0.2)  # back off while the server is away; nothing to await
                continue
            if broken:
                broken = False
                self._resync()
            if raw is not None:
                try:
                    self._handle(raw)
                except Exception:
                    _log.exception("handling pub/sub message %r failed", raw)
            self._fire_due()

    def _next_timeout(self) -> float:
        with self._mutex:
            due = min(self._due.values(), default=None)
        return 1.0 if due is None else min(1.0, max(0.0, due - time.monotonic()))

    def _fire_due(self) -> None:
        now = time.monotonic()
        with self._mutex:
            channels = [channel for channel, due in self._due.items() if due <= now]
            for channel in channels:
                del self._due[channel]
            callbacks = [fn for channel in channels for fn in self._watchers.get(channel, ())]
        for notify in callbacks:
            notify()

    def _resync(self) -> None:
        self._on_resync()
        with self._mutex:
            callbacks = [fn for fns in self._watchers.values() for fn in fns]
        for notify in callbacks:
            notify()

    def _handle(self, raw: dict[str, Any]) -> None:
        message = _parse(raw, self._wake_channel)
        if message is None:
            return
        if message.kind is Received.SUBSCRIBED:
            with self._mutex:
                confirmed = self._confirmed.get(message.channel)
            if confirmed is not None:
                confirmed.set()
        elif message.kind is Received.WAKE:
            self._on_wake(message.data)
        else:
            with self._mutex:
                callbacks = list(self._watchers.get(message.channel, ()))
            for notify in callbacks:
                notify()

    def close(self) -> None:
        self._stop.set()
        try:
            # A message of our own ends the listener's wait for the next one at once.
            self._conn.client.publish(self._wake_channel, b"")
        except redis.exceptions.RedisError:
            _log.debug("could not wake the listener of %s; it stops within a second", self._conn.label)
        if threading.current_thread() is not self._thread:
            self._thread.join()
        try:
            self._pubsub.close()
        except redis.exceptions.RedisError:
            _log.debug("closing the pub/sub connection failed", exc_info=True)


def _parse(raw: dict[str, Any], wake_channel: str) -> Message | None:
    kind, channel, data = raw.get("type"), _text(raw.get("channel")), raw.get("data")
    if kind == "subscribe":
        return Message(Received.SUBSCRIBED, channel, "")
    if kind != "message":
        return None
    if channel == wake_channel:
        return Message(Received.WAKE, channel, _text(data))
    return Message(Received.CHANGED, channel, "")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
