"""What a SQL store knows about its resources, read without changing anything: each
resource's highest token and the latest decisions of its audit table (for
``fencing-coord status --store``).

Store URLs:

- ``sqlite:PATH`` (relative) or ``sqlite:///ABSOLUTE/PATH``: an existing SQLite store
  file, opened read-only (``mode=ro``).
- ``postgresql://[user[:password]@]host[:port]/dbname[?param=value...]`` (or
  ``postgres://``): a libpq URL, read in a ``READ ONLY`` transaction. Needs
  ``fencing-coord[postgres]``.

Nothing is created: a SQLite file that does not exist, or a database without the store's
table ``fc_resource``, is a :class:`ConfigurationError` (a typo in a path must not yield
an empty store that "has no token"). The audit table ``fc_audit`` exists only in stores
opened with ``audit=True``; without it :attr:`ResourceStatus.decisions` is None, never an
empty list (an empty list means the table exists and holds no decision on the resource).
All resources of one :meth:`StoreReader.status` call are read in one snapshot.

Error messages name the store with any password replaced by ``***``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

from ..audit import AuditRow
from ..errors import ConfigurationError, FencingCoordError, InvalidArgument, InvalidArgumentType
from ..url import BackendURL
from ..validation import check_name, check_positive_seconds
from .dberrors import mapped_db_errors
from .sql import SELECT_AUDIT, SELECT_HIGHEST, audit_rows

__all__ = ["MAX_LIMIT", "STORE_URL_HELP", "ResourceStatus", "StoreReader", "open_reader"]

#: The most decisions :meth:`StoreReader.status` returns per resource.
MAX_LIMIT = 1000

STORE_URL_HELP = "sqlite:PATH, sqlite:///ABSOLUTE/PATH or postgresql://user@host:port/dbname"

Query = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


class ResourceStatus(NamedTuple):
    """One resource as its store knows it. ``highest``: the highest admitted token (None:
    none admitted yet). ``decisions``: the latest decisions, newest first; None when the
    store keeps no audit table (decisions are not recorded there)."""

    resource: str
    highest: int | None
    decisions: list[AuditRow] | None


class StoreReader:
    """A read-only view of one store; close it (or use it as a context manager)."""

    def __init__(self, what: str, snapshot: Callable[[], Any], close: Callable[[], None], *, audited: bool,
                 secrets: Sequence[str] = ()) -> None:
        #: The store, for messages (password hidden).
        self.what = what
        #: True when the store keeps an audit table: :meth:`status` returns decisions.
        self.audited = audited
        self._snapshot = snapshot
        self._close = close
        self._secrets = secrets

    def status(self, resources: Sequence[str], limit: int = 20) -> list[ResourceStatus]:
        """The highest token and (where recorded) the latest ``limit`` decisions of each
        of ``resources``, in order, from one snapshot. Raises :class:`InvalidArgument` /
        :class:`InvalidArgumentType` for a bad name or ``limit`` (1..``MAX_LIMIT``),
        :class:`BackendUnavailable` when the store cannot be read now, and
        :class:`ConfigurationError` when it refuses the query."""
        names = [check_name(r, "resource name") for r in resources]
        if type(limit) is not int:
            raise InvalidArgumentType(f"limit must be an int, not {type(limit).__name__}")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        result = []
        with self._scrubbed(), self._snapshot() as query:
            for name in names:
                rows = query(SELECT_HIGHEST, (name,))
                highest = int(rows[0][0]) if rows else None
                decisions = audit_rows(query(SELECT_AUDIT, (name, limit))) if self.audited else None
                result.append(ResourceStatus(name, highest, decisions))
        return result

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self._close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrubbed(self) -> AbstractContextManager[None]:
        return _scrubbed(self._secrets)


@contextmanager
def _scrubbed(secrets: Sequence[str]) -> Iterator[None]:
    """Re-raise our errors with the store's password hidden, should a driver quote it."""
    try:
        yield
    except FencingCoordError as exc:
        message = _scrub(str(exc), secrets)
        if message == str(exc):
            raise
        raise type(exc)(message) from exc.__cause__


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def open_reader(url: str, *, timeout: float = 10.0) -> StoreReader:
    """Open the store ``url`` names (see the module doc) for reading.

    ``timeout``: seconds to wait for a connection (PostgreSQL) or for a writer's lock
    (SQLite). Raises :class:`ConfigurationError` for a URL of no known kind, a file that
    does not exist, a database that holds no store or a missing driver, and
    :class:`BackendUnavailable` when the server cannot be reached.
    """
    if not isinstance(url, str):
        raise InvalidArgumentType(f"a store URL must be a str, not {type(url).__name__}")
    seconds = check_positive_seconds(timeout, "timeout")
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        return _open_sqlite(url, seconds)
    if scheme in ("postgresql", "postgres"):
        return _open_postgres(url, seconds)
    raise ConfigurationError(f"{BackendURL.redact(url)!r} is not a store URL; expected {STORE_URL_HELP}")


def _sqlite_path(url: str) -> str:
    rest = url.partition(":")[2]
    if rest.startswith("//"):
        host, _, path = rest[2:].partition("/")
        if host:
            raise ConfigurationError(
                f"{url!r}: a SQLite store URL names no host; write sqlite:relative/path or sqlite:///absolute/path")
        rest = "/" + path
    if "?" in rest or "#" in rest:
        raise ConfigurationError(f"{url!r}: a SQLite store URL takes no ?options or #fragment (write '?' in a path"
                                 " as %3F, '#' as %23)")
    path = unquote(rest)
    if not path or path == "/":
        raise ConfigurationError(f"{url!r}: no path; expected {STORE_URL_HELP}")
    return path


def _open_sqlite(url: str, timeout: float) -> StoreReader:
    path = _sqlite_path(url)
    what = f"SQLite store {path}"
    if not os.path.isfile(path):
        raise ConfigurationError(f"{what}: no such file (a status never creates a store)")
    with mapped_db_errors(what):
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, timeout=timeout,
                               isolation_level=None, check_same_thread=False)
    try:
        with mapped_db_errors(what):
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('fc_resource', 'fc_audit')")}
        _require_store(what, tables)
    except BaseException:
        conn.close()
        raise

    @contextmanager
    def snapshot() -> Iterator[Query]:
        with mapped_db_errors(what):
            conn.execute("BEGIN")
            try:
                yield lambda sql, params: conn.execute(sql, params).fetchall()
            finally:
                conn.execute("ROLLBACK")

    return StoreReader(what, snapshot, conn.close, audited="fc_audit" in tables)


def _open_postgres(url: str, timeout: float) -> StoreReader:
    secrets = _url_secrets(url)
    what = f"PostgreSQL store {_scrub(BackendURL.redact(url), secrets)}"
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:
        raise ConfigurationError("a PostgreSQL store needs psycopg 3: pip install 'fencing-coord[postgres]'") from exc
    with _scrubbed(secrets), mapped_db_errors(what):
        options = conninfo_to_dict(url)
        keywords: dict[str, Any] = {}
        if "connect_timeout" not in options:
            keywords["connect_timeout"] = max(1, round(timeout))
        conn = psycopg.connect(url, **keywords)
    try:
        with _scrubbed(secrets), mapped_db_errors(what):
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            row = conn.execute("SELECT to_regclass('fc_resource') IS NOT NULL, to_regclass('fc_audit') IS NOT NULL"
                               ).fetchone()
            conn.rollback()
        assert row is not None  # a SELECT without FROM returns one row
        tables = {name for name, present in zip(("fc_resource", "fc_audit"), row, strict=True) if present}
        _require_store(what, tables)
    except BaseException:
        conn.close()
        raise

    @contextmanager
    def snapshot() -> Iterator[Query]:
        with mapped_db_errors(what):
            try:  # one REPEATABLE READ, READ ONLY transaction: one snapshot for every query
                yield lambda sql, params: conn.execute(sql.replace("?", "%s"), params).fetchall()
            finally:
                conn.rollback()

    return StoreReader(what, snapshot, conn.close, audited="fc_audit" in tables, secrets=secrets)


def _require_store(what: str, tables: set[str]) -> None:
    if "fc_resource" not in tables:
        raise ConfigurationError(f"{what} holds no fencing-coord store (no fc_resource table)")


def _url_secrets(url: str) -> list[str]:
    """The passwords of ``url`` (user information and ``?password=``), as written and
    percent-decoded, to hide in messages."""
    rest = url.partition("://")[2]
    netloc, _, query = rest.partition("?")
    written = [netloc.partition("/")[0].rpartition("@")[0].partition(":")[2]]
    written += [pair.partition("=")[2] for pair in query.split("&") if pair.partition("=")[0] == "password"]
    return [s for w in written if w for s in (w, unquote(w))]
