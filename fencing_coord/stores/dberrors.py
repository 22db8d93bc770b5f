"""Map database driver errors (sqlite3, psycopg) to fencing-coord errors at the edge.

Transient failures (the server is unreachable, the connection broke, a lock or busy
timeout, a serialization failure, a full disk) become :class:`BackendUnavailable`
(retryable); everything else the database refuses (a missing table or column, a
permission, a corrupt file, a wrong schema) becomes :class:`ConfigurationError`, since
retrying cannot help. Both are chained to the driver's exception (``from exc``).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import BackendUnavailable, ConfigurationError, FencingCoordError

__all__ = ["mapped_db_errors"]

# Primary SQLite result codes that mean "try again later": BUSY, LOCKED, NOMEM, IOERR,
# FULL, PROTOCOL.
_SQLITE_TRANSIENT = {5, 6, 7, 10, 13, 15}


@contextmanager
def mapped_db_errors(what: str) -> Iterator[None]:
    """Run the block, turning driver errors into fencing-coord errors that name ``what``
    (for example ``"SQLite store state.db"``)."""
    try:
        yield
    except FencingCoordError:
        raise
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)  # not set on every sqlite3 path
        transient = isinstance(exc, sqlite3.OperationalError) if code is None else (code & 0xFF) in _SQLITE_TRANSIENT
        raise _error(transient, what, exc) from exc
    except Exception as exc:
        psycopg = sys.modules.get("psycopg")  # loaded only if a PostgreSQL store is in use
        if psycopg is None or not isinstance(exc, psycopg.Error):
            raise
        transient = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        raise _error(transient, what, exc) from exc


def _error(transient: bool, what: str, exc: Exception) -> FencingCoordError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if transient:
        return BackendUnavailable(f"{what} is unavailable: {detail}")
    return ConfigurationError(f"{what} failed: {detail}; retrying will not help (check the path or DSN, the schema"
                              " and the privileges)")
