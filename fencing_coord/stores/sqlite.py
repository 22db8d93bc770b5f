"""``SQLiteStore(path)``: the embedded default store, safe across threads and processes.

Schema, created on first use (``CREATE TABLE IF NOT EXISTS``)::

    CREATE TABLE fc_resource (
        name          TEXT PRIMARY KEY,    -- resource name
        highest_token INTEGER NOT NULL     -- highest admitted token
    ) WITHOUT ROWID;
    CREATE TABLE fc_value (
        resource TEXT NOT NULL,
        key      TEXT NOT NULL,
        value    BLOB NOT NULL,
        PRIMARY KEY (resource, key)
    ) WITHOUT ROWID;

With ``audit=True`` it also keeps the decisions of gated writes (see
:mod:`fencing_coord.stores.sql`)::

    CREATE TABLE fc_audit (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        resource TEXT NOT NULL, key TEXT NOT NULL, token INTEGER, highest INTEGER,
        decision TEXT NOT NULL, mode TEXT NOT NULL, holder TEXT
    );
    CREATE INDEX fc_audit_resource ON fc_audit (resource, id);

The database is switched to WAL mode (readers never block the writer). A fenced
operation is one ``BEGIN IMMEDIATE`` transaction: it takes the database's write lock
first, then reads the highest token, applies the admission rule and writes, so writers
in other threads and processes are serialized by SQLite itself. A write under the
current highest token (the same holder writing again) is a single conditional upsert,
which holds the write lock from its start to its commit just the same. ``synchronous=FULL``
(the default here) makes every commit durable before it returns.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..audit import AuditNote, decision_of
from ..errors import InvalidArgument, InvalidArgumentType
from ..validation import check_positive_seconds
from .base import FencedOutcome, admits
from .dberrors import mapped_db_errors, outcome_unknown
from .sql import INSERT_AUDIT, SELECT_HIGHEST, SELECT_VALUE, UPSERT_VALUE, SQLStore

__all__ = ["SQLiteStore"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS fc_resource (name TEXT PRIMARY KEY, highest_token INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS fc_value (resource TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY (resource, key)) WITHOUT ROWID",
)
_AUDIT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS fc_audit (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), resource TEXT NOT NULL, key TEXT NOT NULL,"
    " token INTEGER, highest INTEGER, decision TEXT NOT NULL, mode TEXT NOT NULL, holder TEXT)",
    "CREATE INDEX IF NOT EXISTS fc_audit_resource ON fc_audit (resource, id)",
)
_SET_HIGHEST = (
    "INSERT INTO fc_resource (name, highest_token) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET highest_token = excluded.highest_token"
)
# One autocommit statement: SQLite takes the write lock when the statement starts, so
# the token it compares is the latest and stays so until the upsert commits.
_WRITE_IF_CURRENT = (
    "INSERT INTO fc_value (resource, key, value) SELECT ?, ?, ?"
    " WHERE (SELECT highest_token FROM fc_resource WHERE name = ?) = ?"
    " ON CONFLICT (resource, key) DO UPDATE SET value = excluded.value"
)
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class SQLiteStore(SQLStore):
    """Resources in the SQLite database file ``path`` (created if missing).

    ``timeout``: seconds to wait for another process's write lock before raising
    :class:`BackendUnavailable`. ``synchronous``: SQLite's durability setting, ``"FULL"``
    (each commit reaches the disk) or ``"NORMAL"`` (faster; in WAL mode a power loss may
    undo the last commits, never reorder them). ``audit``: keep the ``fc_audit`` table of
    decisions (see above). Each process opens its own store on the
    file; one store object may be shared by the threads of a process.
    Raises :class:`ConfigurationError` when the file cannot be used as a database.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0, synchronous: str = "FULL",
                 audit: bool = False) -> None:
        if not isinstance(path, str | os.PathLike):
            raise InvalidArgumentType(f"path must be a str or os.PathLike, not {type(path).__name__}")
        seconds = check_positive_seconds(timeout, "timeout")
        if synchronous not in _SYNCHRONOUS:
            raise InvalidArgument(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {synchronous!r}")
        if not isinstance(audit, bool):
            raise InvalidArgumentType(f"audit must be a bool, not {type(audit).__name__}")
        self.audit = audit
        self.path = os.fspath(path)
        self.what = f"SQLite store {self.path}"
        # One connection, used under a mutex: SQLite serializes writers anyway.
        self._mutex = threading.Lock()
        with mapped_db_errors(self.what):
            self._conn = sqlite3.connect(self.path, timeout=seconds, isolation_level=None, check_same_thread=False)
            try:
                self._conn.execute(f"PRAGMA synchronous = {synchronous}")
                _enable_wal(self._conn, time.monotonic() + seconds)
                with self._transaction() as conn:
                    for statement in _SCHEMA + (_AUDIT_SCHEMA if audit else ()):
                        conn.execute(statement)
            except BaseException:
                self._conn.close()
                raise

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._mutex:
            self._conn.close()

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        if not strict:
            # The common case, a holder writing again under the current highest token,
            # is one statement; anything else takes the transaction below.
            with mapped_db_errors(self.what, writing=True), self._mutex:
                if self._conn.execute(_WRITE_IF_CURRENT, (resource, key, value, resource, token)).rowcount == 1:
                    return FencedOutcome(True, token)
        with mapped_db_errors(self.what), self._transaction() as conn:
            before, admitted = self._admit(conn, resource, token, strict)
            if admitted:
                conn.execute(UPSERT_VALUE, (resource, key, value))
            return FencedOutcome(admitted, before)

    def gated_write(self, resource: str, key: str, value: bytes, token: int, strict: bool, *, shadow: bool = False,
                    note: AuditNote | None = None) -> FencedOutcome:
        audited = note is not None and self.audit
        if not audited:
            if not shadow:
                return self.fenced_write(resource, key, value, token, strict)
            if not strict:  # the same holder again: admitted in either mode (see fenced_write)
                with mapped_db_errors(self.what), self._mutex:
                    if self._conn.execute(_WRITE_IF_CURRENT, (resource, key, value, resource, token)).rowcount == 1:
                        return FencedOutcome(True, token)
        with mapped_db_errors(self.what), self._transaction() as conn:
            before, admitted = self._admit(conn, resource, token, strict)
            if admitted or shadow:
                conn.execute(UPSERT_VALUE, (resource, key, value))
            if note is not None and audited:
                conn.execute(INSERT_AUDIT, (resource, key, token, before, decision_of(admitted, shadow).value,
                                            str(note.mode), note.holder))
            return FencedOutcome(admitted, before)

    def _raise_and_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        with mapped_db_errors(self.what), self._transaction() as conn:
            before, admitted = self._admit(conn, resource, token, strict)
            if not admitted:
                return FencedOutcome(False, before)
            row = conn.execute(SELECT_VALUE, (resource, key)).fetchone()
            return FencedOutcome(True, before, None if row is None else bytes(row[0]))

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._mutex:
            return self._conn.execute(sql, params).fetchall()

    @staticmethod
    def _admit(conn: sqlite3.Connection, resource: str, token: int, strict: bool) -> tuple[int | None, bool]:
        """Inside the write transaction: apply the admission rule, raise the highest token."""
        row = conn.execute(SELECT_HIGHEST, (resource,)).fetchone()
        before = None if row is None else int(row[0])
        if not admits(before, token, strict):
            return before, False
        if before is None or token > before:
            conn.execute(_SET_HIGHEST, (resource, token))
        return before, True

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (take the write lock now, not at the first write, so two
        transactions cannot both read the old token), commit on success, else roll back."""
        with self._mutex:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            committing = False
            try:
                yield conn
                committing = True
                conn.execute("COMMIT")
            except BaseException as exc:
                # Also when COMMIT itself failed: the shared connection must not stay
                # inside a transaction, or every later BEGIN would fail.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # still ours to undo: nothing was written
                elif committing and isinstance(exc, sqlite3.Error):
                    # SQLite ended the transaction itself on an I/O error during COMMIT:
                    # the commit frame may already be in the WAL, and count after recovery.
                    raise outcome_unknown(self.what, exc) from exc
                raise


def _enable_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Switch the file to WAL (a setting stored in the file) unless it already is.

    Changing the journal mode needs the file to itself, and SQLite answers "database is
    locked" at once instead of calling the busy handler, so processes opening a new file
    together retry here, until ``deadline`` (time.monotonic). Reading the mode first
    keeps every later open off that path.
    """
    while True:
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.005)  # another process holds the file for a moment; nothing to wait on
