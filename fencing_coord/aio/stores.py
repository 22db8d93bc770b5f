"""Async stores: :class:`AsyncMemoryStore`, :class:`AsyncSQLiteStore` and
:class:`AsyncPostgresStore` (etcd's and ZooKeeper's live next to their backends:
``fencing_coord.backends.etcd.aio_store``, ``fencing_coord.backends.zookeeper.aio_store``).

* Memory: the blocking :class:`MemoryStore`'s operations hold its mutex for microseconds:
  called on the loop directly.
* SQLite has no asynchronous interface, and a commit waits for the disk (and, behind
  another process's write lock, up to ``timeout``): :class:`AsyncSQLiteStore` runs the
  blocking :class:`SQLiteStore` on one worker thread of its own (one per store, not one
  per call), as aiosqlite does.
* PostgreSQL: psycopg's ``AsyncConnection``, with the blocking store's statements,
  admission logic and error mapping.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from ..audit import AuditNote
from ..errors import ConfigurationError, InvalidArgumentType
from ..stores.base import FencedOutcome
from ..stores.dberrors import mapped_db_errors
from ..stores.memory import MemoryStore
from ..stores.postgres import FENCED_WRITE, GATE, SCHEMA, SCHEMA_LOCK, pg, raised_read, redacted, settle_connect_timeout
from ..stores.sql import SELECT_HIGHEST, SELECT_SNAPSHOT, SELECT_VALUE, UPSERT_VALUE, as_bytes, decided_by_snapshot
from ..stores.sqlite import SQLiteStore
from .gate import AsyncStore

__all__ = ["AsyncMemoryStore", "AsyncPostgresStore", "AsyncSQLiteStore"]

T = TypeVar("T")


class AsyncMemoryStore(AsyncStore):
    """Resources in this process's memory (a :class:`MemoryStore`, shared if given)."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.sync = MemoryStore() if store is None else store

    async def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        return self.sync.fenced_write(resource, key, value, token, strict)

    async def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        return self.sync.fenced_read(resource, key, token, strict)

    async def plain_write(self, resource: str, key: str, value: bytes) -> None:
        self.sync.plain_write(resource, key, value)

    async def plain_read(self, resource: str, key: str) -> bytes | None:
        return self.sync.plain_read(resource, key)

    async def highest_token(self, resource: str) -> int | None:
        return self.sync.highest_token(resource)

    async def gated_write(self, resource: str, key: str, value: bytes, token: int, strict: bool, *,
                          shadow: bool = False, note: AuditNote | None = None) -> FencedOutcome:
        return self.sync.gated_write(resource, key, value, token, strict, shadow=shadow, note=note)


class AsyncSQLiteStore(AsyncStore):
    """Resources in a SQLite file, through :class:`SQLiteStore` on the store's own worker
    thread. Open with ``await AsyncSQLiteStore.open(path, timeout=..., synchronous=...)``."""

    def __init__(self, sync: SQLiteStore, worker: ThreadPoolExecutor) -> None:
        self.sync = sync
        self.audit = sync.audit
        self._worker = worker

    @classmethod
    async def open(cls, path: str | os.PathLike[str], **options: Any) -> AsyncSQLiteStore:
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fencing-coord-sqlite")
        try:
            sync = await asyncio.get_running_loop().run_in_executor(worker, partial(SQLiteStore, path, **options))
        except BaseException:
            worker.shutdown(wait=False)
            raise
        return cls(sync, worker)

    def __repr__(self) -> str:
        return f"<async {self.sync.what}>"

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        outcome: FencedOutcome = await self._run(self.sync.fenced_write, resource, key, value, token, strict)
        return outcome

    async def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        outcome: FencedOutcome = await self._run(self.sync.fenced_read, resource, key, token, strict)
        return outcome

    async def plain_write(self, resource: str, key: str, value: bytes) -> None:
        await self._run(self.sync.plain_write, resource, key, value)

    async def plain_read(self, resource: str, key: str) -> bytes | None:
        value: bytes | None = await self._run(self.sync.plain_read, resource, key)
        return value

    async def highest_token(self, resource: str) -> int | None:
        highest: int | None = await self._run(self.sync.highest_token, resource)
        return highest

    async def gated_write(self, resource: str, key: str, value: bytes, token: int, strict: bool, *,
                          shadow: bool = False, note: AuditNote | None = None) -> FencedOutcome:
        """The blocking store's one-step gated write (its audit table too, if opened
        with ``audit=True``)."""
        outcome: FencedOutcome = await self._run(partial(self.sync.gated_write, resource, key, value, token, strict,
                                                         shadow=shadow, note=note))
        return outcome

    async def close(self) -> None:
        await self._run(self.sync.close)
        self._worker.shutdown(wait=False)


class AsyncPostgresStore(AsyncStore):
    """Resources in PostgreSQL through psycopg's ``AsyncConnection`` (a small pool; one
    connection per operation in flight). The schema and semantics of
    :class:`PostgresStore`. Open with ``await AsyncPostgresStore.open(dsn)``."""

    def __init__(self, dsn: str, *, connect_timeout: float | None = None) -> None:
        if not isinstance(dsn, str):
            raise InvalidArgumentType(f"dsn must be a str, not {type(dsn).__name__}")
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigurationError("AsyncPostgresStore needs psycopg 3: pip install 'fencing-coord[postgres]'") \
                from exc
        self._psycopg = psycopg
        self.dsn = dsn
        self.what = f"PostgreSQL store {redacted(dsn)}"
        self.connect_timeout, self._connect_timeout_keyword = settle_connect_timeout(dsn, connect_timeout, self.what)
        self._idle: list[Any] = []
        self._closed = False

    @classmethod
    async def open(cls, dsn: str, *, connect_timeout: float | None = None) -> AsyncPostgresStore:
        store = cls(dsn, connect_timeout=connect_timeout)
        conn = await store._borrow()
        try:
            with mapped_db_errors(store.what):
                async with conn.transaction():
                    for statement in SCHEMA:
                        await conn.execute(statement, (SCHEMA_LOCK,) if "%s" in statement else None)
        except BaseException:
            await conn.close()
            raise
        store._idle.append(conn)
        return store

    def __repr__(self) -> str:
        return f"<async {self.what}>"

    async def _borrow(self) -> Any:
        if self._idle:
            return self._idle.pop()
        with mapped_db_errors(self.what):
            keyword: dict[str, Any] = {} if self._connect_timeout_keyword is None else {
                "connect_timeout": self._connect_timeout_keyword}
            conn = await self._psycopg.AsyncConnection.connect(self.dsn, autocommit=True, **keyword)
            await conn.execute("SET default_transaction_isolation = 'read committed'")
            return conn

    async def _statements(self, writing: bool, *steps: tuple[str, Any]) -> list[Any]:
        """Run ``steps`` (sql, params) on one pooled connection, each committed on its
        own; the first row of each (None if none). Stops after a step with no row when
        a later one depends on it (see callers)."""
        conn = await self._borrow()
        rows: list[Any] = []
        try:
            with mapped_db_errors(self.what, writing=writing):
                for sql, params in steps:
                    cursor = await conn.execute(sql, params)
                    rows.append(await cursor.fetchone() if cursor.description is not None else None)
                    if rows[-1] is None and len(steps) > 1:
                        break
        except BaseException:
            await conn.close()
            raise
        if self._closed:
            await conn.close()
        else:
            self._idle.append(conn)
        return rows

    async def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        params = {"resource": resource, "key": key, "value": value, "token": token, "strict": strict}
        (row,) = await self._statements(True, (FENCED_WRITE, params))
        if row is not None:
            return FencedOutcome(True, row[0])
        return FencedOutcome(False, await self.highest_token(resource))

    async def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        rows = await self._query(SELECT_SNAPSHOT, (key, resource))
        decided = decided_by_snapshot(rows, token, strict)
        if decided is not None:
            return decided
        params = {"resource": resource, "token": token, "strict": strict}
        found = await self._statements(True, (GATE, params), (pg(SELECT_SNAPSHOT), (key, resource)))
        if found[0] is None:
            return FencedOutcome(False, await self.highest_token(resource))
        return raised_read(found[0][0], found[1], token)

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        (row,) = await self._statements(not sql.startswith("SELECT"), (pg(sql), params))
        return [] if row is None else [row]

    async def plain_write(self, resource: str, key: str, value: bytes) -> None:
        await self._query(UPSERT_VALUE, (resource, key, value))

    async def plain_read(self, resource: str, key: str) -> bytes | None:
        rows = await self._query(SELECT_VALUE, (resource, key))
        return as_bytes(rows[0][0]) if rows else None

    async def highest_token(self, resource: str) -> int | None:
        rows = await self._query(SELECT_HIGHEST, (resource,))
        return int(rows[0][0]) if rows else None

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
