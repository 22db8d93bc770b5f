"""``redis://`` and ``rediss://``: locks and elections on one Redis server.

See the package docstring for the URL and the options, :mod:`.layout` for the keys,
:mod:`.queue` for the fair queue, :mod:`.session` for leases and the lost signal,
:mod:`.durability` for why tokens never go back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import redis

from fencing_coord.errors import BackendUnavailable, ConfigurationError, FencingCoordError, LockLost
from fencing_coord.fairqueue import wait_in_line
from fencing_coord.grant import Grant
from fencing_coord.interface import Capabilities
from fencing_coord.records import Leader, LockState
from fencing_coord.spi import ElectionBackend, narrow
from fencing_coord.url import BackendURL, OptionReader

from .connection import RedisConnection, RedisSettings, readable_file
from .durability import DurabilityPolicy, TokenFloor, check_server
from .layout import WAKE_PREFIX, QueueKeys, namespace_prefix
from .listener import Listener
from .queue import RedisGrant, RedisQueue, decode_token
from .scripts import LEAVE, MEMBERS, PROCLAIM
from .session import Session

__all__ = ["RedisBackend"]

_log = logging.getLogger(__name__)


class RedisBackend(ElectionBackend):
    """Locks and elections on Redis; obtain one with
    ``fencing_coord.connect("redis://host:6379/0")``.

    Options (besides ``ttl``, ``namespace``, ``timeout``, ``identity``): ``durability``
    (``fsync``, ``replicas`` or ``best-effort``; see :mod:`.durability`), ``replicas``
    (for ``durability=replicas``), and for ``rediss://`` ``ca``, ``cert``, ``key``.
    Raises :class:`ConfigurationError` for a bad URL or option and for a server that
    could lose its token counters (unless ``durability=best-effort``), and
    :class:`BackendUnavailable` when Redis cannot be reached within ``timeout``.
    """

    schemes = ("redis", "rediss")
    capabilities = Capabilities()

    def __init__(self, settings: RedisSettings, *, ttl: float = 10.0, namespace: str = "default",
                 identity: str = "redis-client", durability: DurabilityPolicy | None = None) -> None:
        super().__init__(ttl=ttl, namespace=namespace, identity=identity)
        self.durability = durability or DurabilityPolicy()
        self._floor = TokenFloor()
        self._conn = RedisConnection(settings)
        # The keepalive gives up on a round well before the leases it renews run out.
        self._keepalive_conn = RedisConnection(replace(settings, timeout=min(settings.timeout, max(ttl / 3, 0.05))))
        try:
            self._conn.open()
            check_server(self._conn, self.durability)
            self._keepalive_conn.open()
            self._session = Session(self._conn, self._keepalive_conn, ttl)
        except BaseException:
            self._conn.close()
            self._keepalive_conn.close()
            raise
        try:
            self._listener = Listener(self._conn, self._session.wake_channel, self._session.wake,
                                      self._session.wake_all)
        except BaseException:
            self._session.close()
            self._conn.close()
            self._keepalive_conn.close()
            raise

    @classmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> RedisBackend:
        reader = OptionReader(url, options)
        common = reader.common()
        ca = reader.get("ca", None, readable_file)
        cert = reader.get("cert", None, readable_file)
        key = reader.get("key", None, readable_file)
        durability = reader.get("durability", None, lambda value: value)
        replicas = reader.get("replicas", None, lambda value: value)
        reader.finish()
        label = url.redacted() or f"{url.scheme}://"
        try:
            policy = DurabilityPolicy.parse(durability, replicas)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{label}: {exc}") from exc
        settings = RedisSettings.of(url, common.timeout, ca, cert, key)
        return cls(settings, ttl=common.ttl, namespace=common.namespace, identity=common.identity,
                   durability=policy)

    # -- what operators and tests may look at ------------------------------------------------

    @property
    def session_id(self) -> str:
        """This backend's session: every contender hash it owns has ``sid`` = this, and
        ``/fencing-coord/wake/<session_id>`` is its wake-up channel."""
        return self._session.sid

    @property
    def url(self) -> str:
        """The URL this backend connected to, without its password."""
        return self._conn.label

    # -- the lock SPI ----------------------------------------------------------------------

    def _acquire(self, name: str, deadline: float | None, on_queued: Callable[[], object] | None) -> Grant | None:
        return wait_in_line(RedisQueue(self, "locks", name, b""), deadline, on_queued)

    def _renew(self, grant: Grant) -> None:
        mine = narrow(grant, RedisGrant)
        if mine.entry.gone or not self._session.renew(mine.entry):
            mine.mark_lost("lease expired: its key in Redis was gone at renewal")
            raise LockLost(f"{mine!r} expired before it was renewed")

    def _release(self, grant: Grant) -> bool:
        mine = narrow(grant, RedisGrant)
        entry = mine.entry
        try:
            held = self._conn.run(LEAVE, [entry.keys.queue, entry.keys.entry(entry.id)],
                                  self._session.leave_argv(entry))
        except BackendUnavailable:
            self._session.doom(entry)
            raise
        self._session.forget(entry)
        return bool(held == 1)

    def _describe(self, name: str) -> LockState:
        keys = QueueKeys.of(self.namespace, "locks", name)
        members = self._members(keys, first_only=False)
        if not members:
            return LockState(name, None, None)
        (holder, token), waiting = members[0], members[1:]
        return LockState(name, holder, token, tuple(who for who, _ in waiting))

    def _members(self, keys: QueueKeys, *, first_only: bool) -> list[tuple[str, int]]:
        raw = self._conn.run(MEMBERS, [keys.queue], [keys.base, 1 if first_only else 0])
        if first_only:
            raw = raw[:2]
        members = [(bytes(raw[i]).decode(), decode_token(raw[i + 1])) for i in range(0, len(raw) - 1, 2)]
        if members:
            self._floor.granted(keys.base, members[0][1])  # the holder; the others wait
            self._floor.issued(keys.base, max(token for _, token in members))
        return members

    def _names(self) -> list[str]:
        prefix = namespace_prefix(self.namespace) + "locks/"
        pattern = _glob_escape(prefix) + "*/queue"

        def scan(client: redis.Redis) -> list[str]:
            return [bytes(key).decode() for key in client.scan_iter(match=pattern, count=1000)]

        names = []
        for key in self._conn.call("SCAN", scan):
            name = key[len(prefix):-len("/queue")]
            if "/" not in name and self._members(QueueKeys.of(self.namespace, "locks", name), first_only=True):
                names.append(name)
        return names

    def _close(self, held: list[Grant]) -> None:
        entries = self._session.close()  # stops the keepalive, wakes every waiter
        try:
            if entries:
                calls = [(LEAVE, [e.keys.queue, e.keys.entry(e.id)], self._session.leave_argv(e)) for e in entries]
                self._conn.pipeline("close", calls)
        except FencingCoordError as exc:
            _log.warning("%s: deleting %d contender(s) at close failed (they expire within %g s): %s",
                         self._conn.label, len(entries), self.ttl, exc)
        finally:
            self._listener.close()
            self._keepalive_conn.close()
            self._conn.close()

    # -- the election capability ------------------------------------------------------------

    def _campaign(self, name: str, value: bytes, deadline: float | None,
                  on_queued: Callable[[], object] | None) -> Grant | None:
        return wait_in_line(RedisQueue(self, "elections", name, value), deadline, on_queued)

    def _proclaim(self, grant: Grant, value: bytes) -> None:
        mine = narrow(grant, RedisGrant)
        entry = mine.entry
        done = self._conn.run(PROCLAIM, [entry.keys.queue, entry.keys.entry(entry.id)],
                              [entry.keys.base, entry.id, self._session.sid, value, WAKE_PREFIX, entry.keys.changed])
        if done != 1:
            mine.mark_lost("the term is over: no longer the first candidate")
            raise LockLost(f"term {mine.token} of election {mine.name!r} is over")

    def _leader(self, name: str) -> Leader | None:
        keys = QueueKeys.of(self.namespace, "elections", name)
        raw = self._conn.run(MEMBERS, [keys.queue], [keys.base, 1])
        if not raw:
            return None
        token = decode_token(raw[1])
        self._floor.granted(keys.base, token)
        # Nothing announces a leader's expiry: observers look again when it would expire.
        self._listener.recheck(keys.changed, int(raw[3]) / 1000)
        return Leader(bytes(raw[0]).decode(), bytes(raw[2]), token)

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        return self._listener.watch(QueueKeys.of(self.namespace, "elections", name).changed, notify)

    # -- leases ------------------------------------------------------------------------------

    def _probe(self, grant: Grant) -> None:
        mine = narrow(grant, RedisGrant)
        if not mine.entry.gone and self._session.expired(mine.entry):
            # Redis may have expired it already: the lock may be someone else's now.
            self._session.doom(mine.entry)
            mine.mark_lost(f"lease expired: not renewed for {self.ttl:g} s (paused, or Redis unreachable)")


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern."""
    for special in "\\*?[]":
        text = text.replace(special, "\\" + special)
    return text
