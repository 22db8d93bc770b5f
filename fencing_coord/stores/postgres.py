"""``PostgresStore(dsn)``: resources in PostgreSQL, through psycopg 3.

Schema, created on first use (``CREATE TABLE IF NOT EXISTS``, in the first schema of
the connection's ``search_path``; put ``options=-csearch_path=myschema`` in the DSN to
choose another)::

    CREATE TABLE fc_resource (
        name           text PRIMARY KEY,   -- resource name
        highest_token  bigint NOT NULL,    -- highest admitted token
        previous_token bigint              -- highest_token before the last admission
    );
    CREATE TABLE fc_value (
        resource text NOT NULL,
        key      text NOT NULL,
        value    bytea NOT NULL,
        PRIMARY KEY (resource, key)
    );

With ``audit=True`` it also keeps the decisions of gated writes (see
:mod:`fencing_coord.stores.sql`)::

    CREATE TABLE fc_audit (
        id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
        resource text NOT NULL, key text NOT NULL, token bigint, highest bigint,
        decision text NOT NULL, mode text NOT NULL, holder text
    );
    CREATE INDEX fc_audit_resource ON fc_audit (resource, id);

and, for the writers of an equal token, two functions and a trigger (see
:mod:`fencing_coord.stores.postgres_shared_fence`).

An audited write runs the write's statement, then (when refused) reads the highest
token, then inserts the decision, in one transaction: the refused statement left the
resource's row locked, so the highest token read is the one that refused it.

A fenced write is one statement: an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE
<admission rule>`` on the resource's row, whose ``RETURNING`` feeds the value's upsert in
the same statement. PostgreSQL locks the resource's row and re-checks the rule against
its newest committed version, so concurrent writers on any connection are serialized
on that row and a stale one is refused. ``previous_token`` exists so that this single
statement can report the token it replaced.

Writers of a token equal to the highest (a holder writing again under its grant) do not
lock the resource's row: see :mod:`fencing_coord.stores.postgres_shared_fence`. A
refused equal write falls back to the admission statement, which refuses. The store
tries that path only when its last admission on that resource was of the same token (a
hint; a miss costs one statement and falls back).

A fenced read whose token is above the highest takes two statements: the same admission
statement raises the token (and commits), then one ``SELECT`` reads the highest token
and the value in one snapshot. That snapshot contains every write committed before the
raise; the read is accepted only if the token is still the highest in it, which makes
the snapshot the instant at which the read happened with the token raised. (Reading the
value in the admission statement would not do: its snapshot is taken before it waits
for the row lock, and could miss the previous holder's last write.) Connections run at
READ COMMITTED, so each statement takes a fresh snapshot.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..audit import AuditNote, decision_of
from ..errors import ConfigurationError, InvalidArgumentType
from ..validation import check_positive_seconds
from .base import FencedOutcome
from .dberrors import mapped_db_errors
from .postgres_shared_fence import equal_write_statement
from .postgres_shared_fence import install as install_shared_fence
from .sql import INSERT_AUDIT, SELECT_HIGHEST, SELECT_SNAPSHOT, SQLStore

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "FENCED_WRITE",
    "GATE",
    "SCHEMA",
    "SCHEMA_LOCK",
    "PostgresStore",
    "pg",
    "raised_read",
    "redacted",
    "settle_connect_timeout",
]

#: Seconds a new connection may take when neither the DSN nor the caller says.
_DEFAULT_CONNECT_TIMEOUT = 10

# Any constant will do: it serializes the DDL of stores starting at the same moment
# (concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL's catalog indexes).
_SCHEMA_LOCK = 0x6663_7374_6F72_65  # "fcstore"
_SCHEMA = (
    "SELECT pg_advisory_xact_lock(%s)",
    "CREATE TABLE IF NOT EXISTS fc_resource (name text PRIMARY KEY, highest_token bigint NOT NULL,"
    " previous_token bigint)",
    "CREATE TABLE IF NOT EXISTS fc_value (resource text NOT NULL, key text NOT NULL, value bytea NOT NULL,"
    " PRIMARY KEY (resource, key))",
)
_AUDIT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS fc_audit (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),"
    " resource text NOT NULL, key text NOT NULL, token bigint, highest bigint, decision text NOT NULL,"
    " mode text NOT NULL, holder text)",
    "CREATE INDEX IF NOT EXISTS fc_audit_resource ON fc_audit (resource, id)",
)

# Admit the token on the resource's row (insert it, or update it under the row lock);
# returns one row, the highest token before, when admitted, and no row when refused.
_GATE = """
    INSERT INTO fc_resource AS r (name, highest_token) VALUES (%(resource)s, %(token)s::bigint)
    ON CONFLICT (name) DO UPDATE
        SET highest_token = EXCLUDED.highest_token, previous_token = r.highest_token
        WHERE r.highest_token < EXCLUDED.highest_token
           OR (r.highest_token = EXCLUDED.highest_token AND NOT %(strict)s)
    RETURNING r.previous_token
"""
_FENCED_WRITE = f"""
    WITH gate AS ({_GATE}),
    put AS (
        INSERT INTO fc_value (resource, key, value)
        SELECT %(resource)s, %(key)s, %(value)s FROM gate
        ON CONFLICT (resource, key) DO UPDATE SET value = EXCLUDED.value
    )
    SELECT previous_token FROM gate
"""
# Shadow mode: the same admission, and the value stored whatever it decides.
_SHADOW_WRITE = f"""
    WITH gate AS ({_GATE}),
    put AS (
        INSERT INTO fc_value (resource, key, value) VALUES (%(resource)s, %(key)s, %(value)s)
        ON CONFLICT (resource, key) DO UPDATE SET value = EXCLUDED.value
    )
    SELECT previous_token FROM gate
"""


#: How many resources' last admitted tokens a store remembers (a hint, see above).
_REMEMBERED = 1024


class PostgresStore(SQLStore):
    """Resources in the PostgreSQL database at ``dsn`` (a libpq URL or key=value string).

    Safe across threads (each thread borrows its own connection from a small pool) and
    across processes and hosts (PostgreSQL serializes the writers). Needs
    ``pip install fencing-coord[postgres]``; raises :class:`ConfigurationError` without
    it, and :class:`BackendUnavailable` when the server cannot be reached.

    ``connect_timeout`` (seconds) bounds each new connection; the DSN may say it instead
    (``connect_timeout=5`` in it, whole seconds as libpq counts them, 0 for no limit). Given
    in both with different values, it is refused with :class:`ConfigurationError` rather
    than one silently winning; given in neither, it is 10 s. ``self.connect_timeout`` is
    the one in force (None: no limit).
    """

    def __init__(self, dsn: str, *, connect_timeout: float | None = None, audit: bool = False) -> None:
        if not isinstance(dsn, str):
            raise InvalidArgumentType(f"dsn must be a str, not {type(dsn).__name__}")
        if not isinstance(audit, bool):
            raise InvalidArgumentType(f"audit must be a bool, not {type(audit).__name__}")
        self.audit = audit
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigurationError(
                "PostgresStore needs psycopg 3: pip install 'fencing-coord[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self.dsn = dsn
        self.what = f"PostgreSQL store {_redacted(dsn)}"
        #: Passed to psycopg with every connect; None leaves the DSN's own to it.
        self._connect_timeout_keyword: int | None = None
        self.connect_timeout: float | None = self._settle_connect_timeout(connect_timeout)
        self._idle: list[psycopg.Connection[Any]] = []
        self._mutex = threading.Lock()
        #: Per resource, the token this store last saw admitted: when a write brings the
        #: same token, it tries the shared path first.
        self._last_admitted: dict[str, int] = {}
        self._closed = False
        with self._connection() as conn, conn.transaction():
            for statement in _SCHEMA + (_AUDIT_SCHEMA if audit else ()):
                conn.execute(statement, (_SCHEMA_LOCK,) if "%s" in statement else None)
            self._equal_write = equal_write_statement(install_shared_fence(conn, self.what))

    def close(self) -> None:
        """Close every pooled connection. Idempotent; connections in use close on return."""
        with self._mutex:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        with self._connection(writing=True) as conn:
            if (not strict and self._last_admitted.get(resource) == token
                    and conn.execute(self._equal_write, (resource, key, value, resource, token)).rowcount == 1):
                return FencedOutcome(True, token)
            params = {"resource": resource, "key": key, "value": value, "token": token, "strict": strict}
            row = conn.execute(_FENCED_WRITE, params).fetchone()
            if row is not None:
                self._remember(resource, token)
                return FencedOutcome(True, row[0])
            self._last_admitted.pop(resource, None)  # stale: later writes of it go straight to refusal
            return FencedOutcome(False, self._highest(conn, resource))

    def gated_write(self, resource: str, key: str, value: bytes, token: int, strict: bool, *, shadow: bool = False,
                    note: AuditNote | None = None) -> FencedOutcome:
        if not shadow and (note is None or not self.audit):
            return self.fenced_write(resource, key, value, token, strict)
        params = {"resource": resource, "key": key, "value": value, "token": token, "strict": strict}
        statement = _SHADOW_WRITE if shadow else _FENCED_WRITE
        with self._connection() as conn:
            if note is None or not self.audit:
                row = conn.execute(statement, params).fetchone()
                return FencedOutcome(True, row[0]) if row is not None else FencedOutcome(
                    False, self._highest(conn, resource))
            with conn.transaction():
                row = conn.execute(statement, params).fetchone()
                outcome = FencedOutcome(True, row[0]) if row is not None else FencedOutcome(
                    False, self._highest(conn, resource))
                conn.execute(_pg(INSERT_AUDIT), (resource, key, token, outcome.highest_before,
                                                 decision_of(outcome.accepted, shadow).value, str(note.mode),
                                                 note.holder))
            return outcome

    def _remember(self, resource: str, token: int) -> None:
        """Note that ``token`` was admitted on ``resource`` (the hint for the shared path)."""
        if len(self._last_admitted) >= _REMEMBERED and resource not in self._last_admitted:
            self._last_admitted.clear()
        self._last_admitted[resource] = token

    def _raise_and_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        params = {"resource": resource, "token": token, "strict": strict}
        with self._connection(writing=True) as conn:
            row = conn.execute(_GATE, params).fetchone()
            if row is None:
                return FencedOutcome(False, self._highest(conn, resource))
            # The raise has committed. A new statement reads in a new snapshot, which
            # holds every write committed before the raise; it counts only if ``token``
            # is still the highest in that same snapshot (else a newer holder overtook
            # us in between, and the read is refused as it would be at that instant).
            snapshot = conn.execute(_pg(SELECT_SNAPSHOT), (key, resource)).fetchone()
        return raised_read(row[0], snapshot, token)

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._connection(writing=not sql.startswith("SELECT")) as conn:
            cursor = conn.execute(_pg(sql), params)
            return cursor.fetchall() if cursor.description is not None else []

    def _highest(self, conn: psycopg.Connection[Any], resource: str) -> int | None:
        row = conn.execute(_pg(SELECT_HIGHEST), (resource,)).fetchone()
        return None if row is None else int(row[0])

    @contextmanager
    def _connection(self, *, writing: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a pooled autocommit connection; one that failed is closed, not reused.
        ``writing``: the block writes, so a connection failing during it leaves the
        outcome unknown (a failed connect, before it, writes nothing)."""
        with mapped_db_errors(self.what):
            with self._mutex:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self.open_connection()
        try:
            with mapped_db_errors(self.what, writing=writing):
                yield conn
        except BaseException:
            conn.close()
            raise
        with self._mutex:
            if self._closed:
                conn.close()
            else:
                self._idle.append(conn)

    def _settle_connect_timeout(self, keyword: float | None) -> float | None:
        """Check ``connect_timeout`` against the DSN's and decide which one psycopg gets."""
        seconds, self._connect_timeout_keyword = settle_connect_timeout(self.dsn, keyword, self.what)
        return seconds

    def open_connection(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A new connection to the store's database, by the store's rules (its DSN and
        connect_timeout), at READ COMMITTED; the caller owns it. Raises psycopg's errors
        (callers map them with :func:`~fencing_coord.stores.dberrors.mapped_db_errors`)."""
        if self._connect_timeout_keyword is None:
            conn = self._psycopg.connect(self.dsn, autocommit=autocommit)
        else:
            conn = self._psycopg.connect(self.dsn, autocommit=autocommit,
                                         connect_timeout=self._connect_timeout_keyword)
        # The locking read path relies on a fresh snapshot per statement; a successor
        # waiting on a fence row must see the committed raise, not fail to serialize.
        conn.execute("SET default_transaction_isolation = 'read committed'")
        if not autocommit:
            conn.commit()
        return conn


def settle_connect_timeout(dsn: str, keyword: float | None, what: str) -> tuple[float | None, int | None]:
    """Check ``connect_timeout`` against the DSN's: (seconds in force, or None for no
    limit; the whole seconds to pass psycopg as keyword, or None to leave the DSN's)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        in_dsn = conninfo_to_dict(dsn).get("connect_timeout")
    except psycopg_error():
        in_dsn = None  # an unparsable DSN is reported by the first connect, as before
    dsn_seconds: int | None = None
    if in_dsn is not None:
        try:
            dsn_seconds = int(str(in_dsn).strip())
        except ValueError:
            raise ConfigurationError(
                f"{what}: connect_timeout={in_dsn!r} in the DSN is not a whole number of seconds"
            ) from None
    if keyword is None:
        if dsn_seconds is None:
            return float(_DEFAULT_CONNECT_TIMEOUT), _DEFAULT_CONNECT_TIMEOUT
        return (float(dsn_seconds) if dsn_seconds > 0 else None), None  # libpq: 0 or less waits forever
    seconds = check_positive_seconds(keyword, "connect_timeout")
    if dsn_seconds is not None and float(dsn_seconds) != seconds:
        raise ConfigurationError(
            f"{what}: connect_timeout is given twice, {dsn_seconds} s in the DSN and {keyword} s as "
            "keyword; give it in one place"
        )
    return seconds, max(1, round(seconds))


def psycopg_error() -> type[Exception]:
    import psycopg

    return psycopg.Error


def raised_read(before: int | None, snapshot: tuple[Any, ...] | None, token: int) -> FencedOutcome:
    """A fenced read's outcome once GATE raised the highest token from ``before`` to
    ``token``: the SELECT_SNAPSHOT row read after it counts only if ``token`` is still
    the highest in it (see the module docstring)."""
    assert snapshot is not None  # the gate statement created the row, or it existed
    highest, value = snapshot
    if highest != token:
        return FencedOutcome(False, highest)
    return FencedOutcome(True, before, None if value is None else bytes(value))


FENCED_WRITE, GATE, SCHEMA, SCHEMA_LOCK = _FENCED_WRITE, _GATE, _SCHEMA, _SCHEMA_LOCK


def redacted(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    return _redacted(dsn)


@functools.cache
def pg(sql: str) -> str:
    """The shared ``?``-style statements in psycopg's ``%s`` style."""
    return _pg(sql)


@functools.cache
def _pg(sql: str) -> str:
    """The shared ``?``-style statements in psycopg's ``%s`` style."""
    return sql.replace("?", "%s")


def _redacted(dsn: str) -> str:
    """The DSN without its password, for error messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable dsn>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)
