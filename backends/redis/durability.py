"""Tokens that never repeat and never go down, on a server that can forget.

A token comes from a counter in Redis. A Redis that loses that counter (restarted with
no persistence, persistence that had not reached the disk, a failover to a replica
that had not received the last INCRs, an eviction under ``allkeys-*``) starts counting
again from a lower number, and would hand out tokens that were issued before. Three
choices (option ``durability``):

``fsync`` (default)
    At connect the server must run ``appendonly yes`` with ``appendfsync always`` (every
    write is on disk before Redis answers) and no ``allkeys-*`` eviction policy;
    otherwise :class:`ConfigurationError`.
``replicas`` (with ``replicas=N``, default 1)
    Every grant waits (``WAIT``) until N replicas have the token; a grant that fewer
    acknowledge within ``timeout`` is withdrawn and :class:`BackendUnavailable` raised.
``best-effort``
    No check: a lock that usually excludes, whose tokens may repeat after Redis loses
    data. Only the fenced resource's check then protects the data.

Whatever the choice, each backend remembers the highest token it issued or saw per
lock (:class:`TokenFloor`) and refuses, with :class:`TokenRegression`, a grant whose
token is not above it.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass
from typing import Any

import redis

from fencing_coord.errors import ConfigurationError, TokenSpaceExhausted

from .connection import RedisConnection

__all__ = ["Durability", "DurabilityPolicy", "TokenFloor", "TokenRegression", "check_server"]

_log = logging.getLogger(__name__)


class Durability(enum.Enum):
    FSYNC = "fsync"
    REPLICAS = "replicas"
    BEST_EFFORT = "best-effort"


@dataclass(frozen=True)
class DurabilityPolicy:
    """The ``durability`` option and, for ``replicas``, how many must acknowledge."""

    mode: Durability = Durability.FSYNC
    replicas: int = 0

    @staticmethod
    def parse(mode: Any, replicas: Any) -> DurabilityPolicy:
        """From the option values (None: not given); ValueError/TypeError if unusable."""
        if mode is None:
            mode = Durability.REPLICAS.value if replicas is not None else Durability.FSYNC.value
        if isinstance(mode, Durability):
            mode = mode.value
        if not isinstance(mode, str):
            raise TypeError(f"durability must be a str, not {type(mode).__name__}")
        try:
            chosen = Durability(mode)
        except ValueError:
            raise ValueError(f"durability must be fsync, replicas or best-effort, not {mode!r}") from None
        if chosen is not Durability.REPLICAS:
            if replicas is not None:
                raise ValueError("replicas= goes with durability=replicas")
            return DurabilityPolicy(chosen)
        count = 1 if replicas is None else _count(replicas)
        return DurabilityPolicy(chosen, count)


def _count(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"replicas must be a whole number >= 1, not {value!r}")
    return value


def check_server(conn: RedisConnection, policy: DurabilityPolicy) -> None:
    """Refuse (ConfigurationError) a server on which tokens could go back, as the
    module docstring says; nothing to check for ``best-effort``."""
    if policy.mode is Durability.BEST_EFFORT:
        return

    def read(client: redis.Redis) -> dict[str, str]:
        settings: dict[str, str] = {}
        for name in ("appendonly", "appendfsync", "maxmemory-policy"):
            for key, value in client.config_get(name).items():
                settings[_text(key)] = _text(value)
        return settings

    try:
        settings = conn.call("CONFIG GET", read)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{conn.label}: cannot check that Redis keeps its token counters ({exc}). Allow CONFIG GET for this"
            " user, or accept tokens that may repeat after Redis loses data with durability=best-effort"
        ) from exc
    problems = []
    if policy.mode is Durability.FSYNC:
        if settings.get("appendonly") != "yes":
            problems.append(f"appendonly is {settings.get('appendonly')!r}, not 'yes'")
        if settings.get("appendfsync") != "always":
            problems.append(f"appendfsync is {settings.get('appendfsync')!r}, not 'always'")
    if settings.get("maxmemory-policy", "").startswith("allkeys-"):
        problems.append(f"maxmemory-policy {settings['maxmemory-policy']!r} may evict the token counters")
    if problems:
        raise ConfigurationError(
            f"{conn.label}: Redis could lose its token counters, and tokens would then repeat or go down: "
            f"{'; '.join(problems)}. Run Redis with appendonly yes, appendfsync always and a noeviction or"
            " volatile-* policy; or have every grant wait for replicas (durability=replicas&replicas=N); or"
            " accept a best-effort lock (durability=best-effort)"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class TokenRegression(TokenSpaceExhausted):
    """Redis issued a token not above one this backend had already issued or seen for
    the same lock: Redis lost data. The grant is refused; the lock's counter has been
    raised past the highest token seen, so trying again gets a larger token."""

    retryable = True


class TokenFloor:
    """What this backend knows of each queue's tokens (thread-safe): the highest token
    its counter ever gave (``issued``: a new token must be above it) and the highest
    token of a grant it made or a holder it saw (``granted``: a grant's token must not
    be below it). A waiter's token is issued but not granted: a thread queued behind it
    gets a larger one before it is granted."""

    def __init__(self) -> None:
        self._issued: dict[str, int] = {}
        self._granted: dict[str, int] = {}
        self._lock = threading.Lock()

    def issued_floor(self, queue: str) -> int:
        with self._lock:
            return self._issued.get(queue, 0)

    def granted_floor(self, queue: str) -> int:
        with self._lock:
            return self._granted.get(queue, 0)

    def issued(self, queue: str, token: int) -> None:
        """The counter gave ``token`` (to a contender that may still wait)."""
        with self._lock:
            self._issued[queue] = max(token, self._issued.get(queue, 0))

    def granted(self, queue: str, token: int) -> None:
        """A grant with ``token`` was made, or a holder with it was seen."""
        with self._lock:
            self._issued[queue] = max(token, self._issued.get(queue, 0))
            self._granted[queue] = max(token, self._granted.get(queue, 0))

    def regression(self, label: str, what: str, token: int, floor: int) -> TokenRegression:
        """The error for a token at or below ``floor``, logged: it means lost data."""
        message = (
            f"{label}: Redis issued token {token} for {what}, but this client had already seen token {floor}: Redis"
            " lost data (restarted without persistence, or failed over to a replica that was behind). Grant refused;"
            f" the counter now stands above {floor}, so a new attempt gets a larger token. Holders granted since the"
            " loss may hold tokens that were issued before: only a fenced resource refuses their writes"
        )
        _log.error("%s", message)
        return TokenRegression(message)
