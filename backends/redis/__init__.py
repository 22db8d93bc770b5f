"""``redis://`` and ``rediss://``: locks, elections and a fenced store on Redis.

URL: ``redis://[user:password@]host[:port][/db]`` (``rediss://`` for TLS, with ``ca=``,
``cert=`` and ``key=`` naming PEM files, as ``etcds://`` does). Options, besides the
common ones (``ttl``, ``namespace``, ``timeout``, ``identity``):

=========== ============================================================ ==========
option      meaning                                                      default
=========== ============================================================ ==========
durability  ``fsync``: refuse a server without ``appendonly yes`` and     ``fsync``
            ``appendfsync always``; ``replicas``: WAIT for ``replicas``
            replicas on every grant; ``best-effort``: no check
replicas    how many replicas must acknowledge each grant                1
ca          CA certificate (PEM) for ``rediss://``                       system CAs
cert, key   client certificate and key (PEM) for ``rediss://``           none
=========== ============================================================ ==========

- :class:`RedisBackend` (:mod:`.backend`): the fair queue of :mod:`.queue` on the keys of
  :mod:`.layout`, run by the scripts of :mod:`.scripts`; leases kept by one keepalive
  thread (:mod:`.session`), waiters woken by one pub/sub listener (:mod:`.listener`);
  tokens that never go back (:mod:`.durability`).
- :class:`RedisStore` (:mod:`.store`): a FencedResource's store in Redis, one script per
  fenced operation.

Needs ``pip install 'fencing-coord[redis]'`` (redis-py). One Redis server (a primary);
Sentinel and Cluster are not supported.
"""

from __future__ import annotations

from .backend import RedisBackend
from .durability import Durability, TokenRegression
from .queue import RedisGrant
from .store import RedisStore

__all__ = ["Durability", "RedisBackend", "RedisGrant", "RedisStore", "TokenRegression"]
