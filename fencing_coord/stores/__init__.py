"""Stores behind :class:`~fencing_coord.FencedResource`.

- :class:`MemoryStore`: in this process's memory (thread-safe).
- :class:`SQLiteStore`: a SQLite file, the embedded default (safe across processes).
- :class:`PostgresStore`: PostgreSQL through psycopg 3 (``fencing-coord[postgres]``).
- ``EtcdStore`` / ``ZooKeeperStore``: in the coordination service itself; imported on
  first use from their backend modules, so importing this package never imports
  ``etcd3`` or ``kazoo``.
- ``RedisStore``: in Redis, one Lua script per fenced operation
  (``fencing-coord[redis]``); imported on first use from the Redis backend package.
- :class:`S3Store`: object storage through conditional writes (``fencing-coord[s3]``);
  imported on first use, so importing this package never imports ``boto3``.
- :mod:`.fenced_sql`: Pattern A, fencing rows of your own SQL tables.

Write your own by subclassing :class:`Store` (see :mod:`.base`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import MAX_VALUE_SIZE, FencedOutcome, Store, admits
from .memory import MemoryStore

if TYPE_CHECKING:
    from .postgres import PostgresStore
    from .sqlite import SQLiteStore

__all__ = [
    "MAX_VALUE_SIZE",
    "EtcdStore",
    "FencedOutcome",
    "MemoryStore",
    "PostgresStore",
    "RedisStore",
    "S3Store",
    "SQLiteStore",
    "Store",
    "ZooKeeperStore",
    "admits",
]

# Stores imported when first named: those living next to their backend, and the SQL
# stores (sqlite3 and the shared SQL code cost an import of ``fencing_coord`` ~15 ms).
_LAZY = {
    "PostgresStore": "fencing_coord.stores.postgres",
    "SQLiteStore": "fencing_coord.stores.sqlite",
    "EtcdStore": "fencing_coord.backends.etcd",
    "ZooKeeperStore": "fencing_coord.backends.zookeeper",
    "RedisStore": "fencing_coord.backends.redis",
    "S3Store": "fencing_coord.stores.s3",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
