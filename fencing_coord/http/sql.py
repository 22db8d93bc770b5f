"""Admissions whose decision is atomic with the handler's SQL: the token is checked and
raised inside a transaction that stays open while the handler runs, on the connection
the handler gets as ``FencedRequest.connection``, and commits with the handler's work.

They use the stores' own tables (``fc_resource``; created here when missing, exactly as
:class:`~fencing_coord.stores.SQLiteStore` / :class:`~fencing_coord.stores.PostgresStore`
create them), so an HTTP receiver and a FencedResource on the same database share one
highest token per resource name.

- **SQLite**: ``BEGIN IMMEDIATE`` takes the database's write lock before the check, so
  every fenced request on the file runs its handler one at a time (SQLite has one writer
  anyway); others wait up to ``timeout`` seconds, then get 503.
- **PostgreSQL**: the admission's upsert locks the resource's ``fc_resource`` row until
  the commit, so requests on one resource run one at a time and requests on different
  resources run in parallel. A successor's admission waits for the row, then sees the
  raised token. Connections run at READ COMMITTED.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable, InvalidArgumentType
from ..stores.base import admits
from ..stores.dberrors import mapped_db_errors
from ..stores.postgres import GATE, PostgresStore
from ..stores.sql import SELECT_HIGHEST
from ..stores.sqlite import SQLiteStore
from ..validation import check_positive_seconds
from .admission import Admission, FencedRequest, Ticket
from .protocol import Fence

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresAdmission", "SQLiteAdmission"]

_SQLITE_RAISE = ("INSERT INTO fc_resource (name, highest_token) VALUES (?, ?)"
                 " ON CONFLICT (name) DO UPDATE SET highest_token = excluded.highest_token")
# PostgresStore's admission (GATE) locks the resource's row until commit, also when the
# token equals the highest, so a successor waits for this transaction; it returns the
# token before, or no row if refused.


class _Pool:
    """Idle connections for reuse; ``open`` makes a new one when none is idle."""

    def __init__(self) -> None:
        self._idle: list[Any] = []
        self._mutex = threading.Lock()
        self._closed = False

    def take(self) -> Any | None:
        with self._mutex:
            return self._idle.pop() if self._idle else None

    def give(self, conn: Any) -> None:
        with self._mutex:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class SQLiteAdmission(Admission):
    """Admission in a ``BEGIN IMMEDIATE`` transaction on the SQLite file ``path``."""

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False, timeout: float = 30.0) -> None:
        if not isinstance(strict, bool):
            raise InvalidArgumentType(f"strict must be a bool, not {type(strict).__name__}")
        self.timeout = check_positive_seconds(timeout, "timeout")
        SQLiteStore(path, timeout=self.timeout).close()  # the schema and WAL mode, as the store has them
        self.path, self.strict = os.fspath(path), strict
        self.what = f"SQLite store {self.path}"
        self._pool = _Pool()

    def __repr__(self) -> str:
        return f"SQLiteAdmission({self.path!r}, strict={self.strict})"

    def close(self) -> None:
        self._pool.close()

    def admit(self, fence: Fence) -> Ticket:
        with mapped_db_errors(self.what):
            conn = self._pool.take() or sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                                        check_same_thread=False)
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(SELECT_HIGHEST, (fence.resource,)).fetchone()
                before = None if row is None else int(row[0])
                if not admits(before, fence.token, self.strict):
                    conn.execute("ROLLBACK")
                    self._pool.give(conn)
                    return Ticket(False, before)
                if before is None or fence.token > before:
                    conn.execute(_SQLITE_RAISE, (fence.resource, fence.token))
            except BaseException:
                _discard(conn)
                raise
        request = FencedRequest(fence.resource, fence.token, before, connection=conn)
        return Ticket(True, before, request, lambda commit: self._finish(conn, commit))

    def _finish(self, conn: sqlite3.Connection, commit: bool) -> None:
        try:
            with mapped_db_errors(self.what):
                conn.execute("COMMIT" if commit else "ROLLBACK")
        except BaseException:
            _discard(conn)  # SQLite rolls back a COMMIT that failed; the connection goes
            raise
        self._pool.give(conn)


class PostgresAdmission(Admission):
    """Admission in a PostgreSQL transaction on the database at ``dsn``."""

    def __init__(self, dsn: str, *, strict: bool = False, connect_timeout: float = 10.0) -> None:
        if not isinstance(strict, bool):
            raise InvalidArgumentType(f"strict must be a bool, not {type(strict).__name__}")
        # The store makes the schema, checks dsn and connect_timeout, and opens our
        # connections by its rules.
        self._store = PostgresStore(dsn, connect_timeout=connect_timeout)
        self.dsn, self.strict, self.connect_timeout, self.what = dsn, strict, connect_timeout, self._store.what
        self._pool = _Pool()

    def __repr__(self) -> str:
        return f"PostgresAdmission({self.what!r}, strict={self.strict})"

    def close(self) -> None:
        self._pool.close()
        self._store.close()

    def admit(self, fence: Fence) -> Ticket:
        params = {"resource": fence.resource, "token": fence.token, "strict": self.strict}
        with mapped_db_errors(self.what):
            conn: psycopg.Connection[Any] = self._pool.take() or self._store.open_connection(autocommit=False)
            try:
                row = conn.execute(GATE, params).fetchone()
                if row is None:
                    conn.rollback()
                    highest = conn.execute(SELECT_HIGHEST.replace("?", "%s"), (fence.resource,)).fetchone()
                    conn.rollback()
                    self._pool.give(conn)
                    return Ticket(False, None if highest is None else int(highest[0]))
            except BaseException:
                _discard(conn)
                raise
        before = row[0]  # previous_token: NULL on the first admission (the insert)
        request = FencedRequest(fence.resource, fence.token, before, connection=conn)
        return Ticket(True, before, request, lambda commit: self._finish(conn, commit))

    def _finish(self, conn: psycopg.Connection[Any], commit: bool) -> None:
        try:
            with mapped_db_errors(self.what):
                if commit:
                    conn.commit()
                else:
                    conn.rollback()
        except BackendUnavailable as exc:
            _discard(conn)
            if commit:  # the COMMIT may have reached the server: nobody can say
                raise BackendUnavailable(f"{exc}; the commit's outcome is unknown") from exc.__cause__
            raise
        except BaseException:
            _discard(conn)
            raise
        self._pool.give(conn)


def _discard(conn: Any) -> None:
    """Close a connection in an unknown state instead of reusing it."""
    with contextlib.suppress(Exception):  # already failing: the first error is the one to report
        conn.close()
