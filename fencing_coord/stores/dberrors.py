"""Map database driver errors (sqlite3, psycopg) to fencing-coord errors at the edge.

Transient failures (the server is unreachable, the connection broke, a lock or busy
timeout, a serialization failure, a full disk) become :class:`BackendUnavailable`
(retryable); everything else the database refuses (a missing table or column, a
permission, a corrupt file, a wrong schema) becomes :class:`ConfigurationError`, since
retrying cannot help. Both are chained to the driver's exception (``from exc``).

A write whose reply is lost cannot be reported as accepted or refused: when the
connection fails while a write's statement or its commit is in flight (``writing=True``),
the error is :class:`BackendUnavailable` saying "outcome unknown", and the write may or
may not have been applied. An error the database reports for the statement itself (a
lock timeout, a serialization failure) means it was rolled back: not applied.

A PostgreSQL server that refuses a new connection because of who or where the client
connects to (a database or role that does not exist, failed authentication, no
``pg_hba.conf`` entry) answers with a FATAL message but no SQLSTATE reaches psycopg, so
those are recognised by the server's (English) message text.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from types import TracebackType

from ..errors import BackendUnavailable, ConfigurationError, FencingCoordError

__all__ = ["mapped_db_errors", "outcome_unknown"]

# Primary SQLite result codes that mean "try again later": BUSY, LOCKED, NOMEM, IOERR,
# FULL, PROTOCOL.
_SQLITE_TRANSIENT = {5, 6, 7, 10, 13, 15}

# SQLite result codes of a write that never started: it could not take the lock.
_SQLITE_NOT_STARTED = {5, 6}  # BUSY, LOCKED

# SQLSTATEs that do not prove the server rolled the statement back: the connection
# failed (class 08), or the server was shut down or the session terminated, which may
# come after the commit (57P01..57P03).
_PG_LOST = ("08", "57P01", "57P02", "57P03")

# libpq's report of a server refusing the connection for a reason only the operator can
# change (the server's FATAL message at startup; psycopg gives it no SQLSTATE).
_PG_REFUSED_CONNECTION = re.compile(
    r'FATAL:.*(database ".*" does not exist|role ".*" does not exist|authentication failed'
    r"|no pg_hba\.conf entry|permission denied for database|is not permitted to log in)"
)


class mapped_db_errors:  # lower case: it reads like a function, ``with mapped_db_errors(what):``
    """Run the block, turning driver errors into fencing-coord errors that name ``what``
    (for example ``"SQLite store state.db"``).

    A class rather than a generator-based context manager: it wraps every store call,
    and this costs a fraction as much.
    """

    __slots__ = ("what", "writing")

    def __init__(self, what: str, *, writing: bool = False) -> None:
        self.what = what
        #: The block sends a write and its commit: a lost connection leaves it unknown.
        self.writing = writing

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, FencingCoordError) or not isinstance(exc, Exception):
            return
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorcode", None)  # not set on every sqlite3 path
            if code is None:
                code = 5 if isinstance(exc, sqlite3.OperationalError) else 1  # BUSY / ERROR
            transient = (code & 0xFF) in _SQLITE_TRANSIENT
            if transient and self.writing and (code & 0xFF) not in _SQLITE_NOT_STARTED:
                raise outcome_unknown(self.what, exc) from exc
            raise _error(transient, self.what, exc) from exc
        psycopg = sys.modules.get("psycopg")  # loaded only if a PostgreSQL store is in use
        if psycopg is not None and isinstance(exc, psycopg.Error):
            transient = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
            if transient and exc.sqlstate is None and _PG_REFUSED_CONNECTION.search(str(exc)):
                transient = False
            if transient and self.writing and (exc.sqlstate is None or exc.sqlstate.startswith(_PG_LOST)):
                raise outcome_unknown(self.what, exc) from exc
            raise _error(transient, self.what, exc) from exc


def outcome_unknown(what: str, exc: BaseException) -> BackendUnavailable:
    """The error for a write whose reply was lost: retryable, and says so."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendUnavailable(
        f"{what}: outcome unknown: the write may or may not have been applied (the connection failed before "
        f"the reply; read to find out): {detail}"
    )


def _error(transient: bool, what: str, exc: Exception) -> FencingCoordError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if transient:
        return BackendUnavailable(f"{what} is unavailable: {detail}")
    return ConfigurationError(f"{what} failed: {detail}; retrying will not help (check the path or DSN, the schema"
                              " and the privileges)")
