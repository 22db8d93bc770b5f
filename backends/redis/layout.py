"""Where the Redis backend and store keep things: key and channel names.

Every key starts with ``/fencing-coord/<namespace>/``. Names, namespaces, resources
and keys never contain ``/`` (see :func:`fencing_coord.validation.check_name`), so the
``/``-separated names below cannot collide.

A lock ``NAME`` (an election: ``elections`` instead of ``locks``) is three kinds of key
under ``/fencing-coord/<namespace>/locks/<NAME>``:

``.../token``      the lock's token counter (INCR; never expires, never deleted)
``.../queue``      sorted set of the contenders' ids, scored by their tokens
``.../e/<id>``     one hash per contender: ``sid`` (its backend's session), ``who``
                   (identity) and ``val`` (an election candidate's value); it expires
                   ``ttl`` after its backend's keepalive last refreshed it

Channels (pub/sub): ``/fencing-coord/wake/<sid>`` reaches the backend whose session is
``sid`` (the message is the id of its contender that became first);
``.../elections/<NAME>/changed`` tells observers that the leader may have changed.

A fenced resource of :class:`~fencing_coord.backends.redis.RedisStore` is
``/fencing-coord/<namespace>/resources/<resource>/token`` (the highest admitted token,
20 decimal digits) and ``.../data/<key>`` (the values).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from fencing_coord.spi import ROOT

__all__ = ["WAKE_PREFIX", "Kind", "QueueKeys", "ResourceKeys", "namespace_prefix"]

_log = logging.getLogger(__name__)

Kind = Literal["locks", "elections"]

#: Prefix of every backend session's wake-up channel (followed by the session id).
WAKE_PREFIX = f"{ROOT}/wake/"


def namespace_prefix(namespace: str) -> str:
    return f"{ROOT}/{namespace}/"


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one lock's (or election's) queue."""

    base: str

    @staticmethod
    def of(namespace: str, kind: Kind, name: str) -> QueueKeys:
        return QueueKeys(f"{namespace_prefix(namespace)}{kind}/{name}")

    @property
    def queue(self) -> str:
        return self.base + "/queue"

    @property
    def counter(self) -> str:
        return self.base + "/token"

    @property
    def changed(self) -> str:
        return self.base + "/changed"

    def entry(self, entry_id: str) -> str:
        return f"{self.base}/e/{entry_id}"


@dataclass(frozen=True)
class ResourceKeys:
    """The keys of one fenced resource of a RedisStore."""

    base: str

    @staticmethod
    def of(namespace: str, resource: str) -> ResourceKeys:
        return ResourceKeys(f"{namespace_prefix(namespace)}resources/{resource}")

    @property
    def token(self) -> str:
        return self.base + "/token"

    def data(self, key: str) -> str:
        return f"{self.base}/data/{key}"
