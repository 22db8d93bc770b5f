"""Pattern A: fence the rows of your own SQL tables with a token column.

Give the table a fence column (``fence BIGINT``, NULL meaning "never fenced") and write
through one of these helpers instead of a bare ``UPDATE``::

    from fencing_coord.stores.fenced_sql import fenced_update, fenced_upsert

    result = fenced_update(conn, "account_positions", key={"account_id": 42},
                           values={"qty": 10, "avg_px": 101.5}, token=grant.token)
    result.raise_for_status()      # StaleTokenError when refused
    conn.commit()

``fenced_update`` runs, as one statement::

    UPDATE account_positions SET qty = ?, avg_px = ?, fence = ?
     WHERE account_id = ? AND (fence IS NULL OR fence <= ?)

and ``fenced_upsert`` (which also creates a missing row; the key columns need a
PRIMARY KEY or UNIQUE constraint)::

    INSERT INTO account_positions AS fc_target (account_id, qty, avg_px, fence) VALUES (?, ?, ?, ?)
    ON CONFLICT (account_id) DO UPDATE SET qty = excluded.qty, avg_px = excluded.avg_px,
        fence = excluded.fence
     WHERE fc_target.fence IS NULL OR fc_target.fence <= excluded.fence

To read-modify-write a row, read it with :func:`fenced_select`, which raises the row's
fence to ``token`` in the same statement that reads it::

    UPDATE account_positions SET fence = ?
     WHERE account_id = ? AND (fence IS NULL OR fence <= ?)
    RETURNING qty, avg_px, fence

so once it has returned, a holder with an older token can no longer write what it
computed from an older value: its ``fenced_update`` is refused. A plain ``SELECT``
followed by ``fenced_update`` loses updates: a paused holder's late write is accepted
as long as no newer holder has *written* yet, and the newer holder read the same old
value. The row stays locked (PostgreSQL: the row; SQLite: the database) until the
caller commits; commit right after the read to keep the lock short, the raised fence
protects the row from then on.

The row count says accepted (1) or refused (0); on refusal one more ``SELECT`` reads the
fence that refused it, for the reason; no row at all is its own outcome
(:class:`RowNotFound` from ``raise_for_status``: the key matches nothing, the lock is
not lost). ``strict=True`` uses ``<`` (an equal token is
refused too). The statement runs in the caller's transaction on the caller's
connection (``sqlite3.Connection`` or ``psycopg.Connection``): commit it together with
the rest of the state it guards, so state and fence change together. The token check
is per row: each row carries its own fence.

Values and keys are bound parameters; table and column names are quoted identifiers
(``"name"``, embedded quotes doubled; ``schema.table`` is split at the dot), never
interpolated raw. Database errors are mapped to :class:`ConfigurationError` or
:class:`BackendUnavailable`, chained. A connection the caller closed is a
:class:`ConfigurationError` (a bug to fix, not a fault to retry); one the server or the
network broke is :class:`BackendUnavailable`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, InvalidArgument, InvalidArgumentType, RowNotFound, StaleTokenError
from .base import check_store_token
from .dberrors import mapped_db_errors

__all__ = ["RowReadResult", "RowWriteResult", "fenced_select", "fenced_update", "fenced_upsert"]


@dataclass(frozen=True)
class RowWriteResult:
    """The outcome of a Pattern A write.

    ``accepted``: the row was written. ``fence``: when accepted, the token now in the
    row; when refused, the row's fence that refused it (None: no row matches the key,
    which only :func:`fenced_update` can report). ``reason``: None, or why it was
    refused (``"stale token 7 < 9"``, ``"no row of 'accounts' matches ..."``).
    """

    accepted: bool
    fence: int | None
    reason: str | None = None

    @property
    def missing(self) -> bool:
        """True when no row matches the key (refused, with no fence to blame)."""
        return not self.accepted and self.fence is None

    def raise_for_status(self) -> RowWriteResult:
        """Return ``self`` if accepted; raise :class:`RowNotFound` if no row matches the
        key, :class:`StaleTokenError` if the row's fence refused the token."""
        _raise_if_refused(self.accepted, self.fence, self.reason)
        return self


@dataclass(frozen=True)
class RowReadResult:
    """The outcome of :func:`fenced_select`.

    ``accepted``: the row's fence admitted the token and now holds it, and ``values``
    maps each requested column to the row's value, read in the same statement.
    ``fence``: when accepted, the token now in the row; when refused, the fence that
    refused it; None when no row matches the key (``missing``). ``reason``: None, or why.
    """

    accepted: bool
    fence: int | None
    values: Mapping[str, Any] | None = None
    reason: str | None = None

    @property
    def missing(self) -> bool:
        """True when no row matches the key."""
        return not self.accepted and self.fence is None

    def raise_for_status(self) -> RowReadResult:
        """Return ``self`` if accepted; raise :class:`RowNotFound` if no row matches the
        key, :class:`StaleTokenError` if the row's fence refused the token."""
        _raise_if_refused(self.accepted, self.fence, self.reason)
        return self


def _raise_if_refused(accepted: bool, fence: int | None, reason: str | None) -> None:
    if accepted:
        return
    if fence is None:
        raise RowNotFound(reason or "no row matches the key")
    raise StaleTokenError(reason or "refused")


def fenced_select(conn: Any, table: str, key: Mapping[str, object], columns: Sequence[str], *,
                  token: int, fence_column: str = "fence", strict: bool = False) -> RowReadResult:
    """Read ``columns`` of the row of ``table`` matching ``key`` and raise its fence to
    ``token``, in one statement, if the fence admits ``token``: the read of a
    read-modify-write (see the module doc).

    Returns a :class:`RowReadResult`: accepted with the values; refused with the fence
    that refused it (the row is unchanged); or ``missing``. Raises
    :class:`InvalidArgument` when ``key`` matches several rows (roll back: their fences
    were raised in your transaction), and the errors of :func:`fenced_update`.
    """
    if isinstance(columns, str) or not isinstance(columns, Sequence):
        raise InvalidArgumentType("columns must be a sequence of column names, e.g. ['qty']")
    names = list(dict.fromkeys(columns))
    sql = _Statement(conn, table, key, dict.fromkeys(names), fence_column, strict)
    comparison = "<" if strict else "<="
    returning = ", ".join([*sql.value_columns, sql.fence])
    statement = (f"UPDATE {sql.table} SET {sql.fence} = {sql.mark} WHERE {sql.key_condition}"
                 f" AND ({sql.fence} IS NULL OR {sql.fence} {comparison} {sql.mark}) RETURNING {returning}")
    checked = check_store_token(token)
    with mapped_db_errors(f"table {table!r}"):
        rows = conn.execute(statement, (checked, *sql.keys, checked)).fetchall()
        if len(rows) > 1:
            raise InvalidArgument(
                f"{sql.key_repr!r} matches {len(rows)} rows of {table!r}: a fenced read needs a key that identifies "
                "one row (roll back: every matching row's fence was raised in your transaction)"
            )
        if rows:
            return RowReadResult(True, checked, dict(zip(names, rows[0][:-1], strict=True)))
        refused = sql.refusal(checked)
    return RowReadResult(False, refused.fence, None, refused.reason)


def fenced_update(conn: Any, table: str, key: Mapping[str, object], values: Mapping[str, object], *,
                  token: int, fence_column: str = "fence", strict: bool = False) -> RowWriteResult:
    """Update the row of ``table`` matching ``key`` (column -> value) with ``values`` and
    set its fence to ``token``, if the row's fence admits ``token``. See the module doc."""
    sql = _Statement(conn, table, key, values, fence_column, strict)
    comparison = "<" if strict else "<="
    assignments = ", ".join(f"{column} = {sql.mark}" for column in [*sql.value_columns, sql.fence])
    statement = (f"UPDATE {sql.table} SET {assignments} WHERE {sql.key_condition}"
                 f" AND ({sql.fence} IS NULL OR {sql.fence} {comparison} {sql.mark})")
    params = (*sql.values, token, *sql.keys, token)
    return sql.run(statement, params, token)


def fenced_upsert(conn: Any, table: str, key: Mapping[str, object], values: Mapping[str, object], *,
                  token: int, fence_column: str = "fence", strict: bool = False) -> RowWriteResult:
    """Insert the row ``key`` + ``values`` with fence ``token``, or update the existing
    row if its fence admits ``token``. See the module doc."""
    sql = _Statement(conn, table, key, values, fence_column, strict)
    comparison = "<" if strict else "<="
    columns = [*sql.key_columns, *sql.value_columns, sql.fence]
    updates = ", ".join(f"{column} = excluded.{column}" for column in [*sql.value_columns, sql.fence])
    statement = (
        f"INSERT INTO {sql.table} AS fc_target ({', '.join(columns)}) VALUES ({', '.join([sql.mark] * len(columns))})"
        f" ON CONFLICT ({', '.join(sql.key_columns)}) DO UPDATE SET {updates}"
        f" WHERE fc_target.{sql.fence} IS NULL OR fc_target.{sql.fence} {comparison} excluded.{sql.fence}"
    )
    params = (*sql.keys, *sql.values, token)
    return sql.run(statement, params, token)


class _Statement:
    """The checked, quoted parts of one Pattern A statement for one connection."""

    def __init__(self, conn: Any, table: str, key: Mapping[str, object], values: Mapping[str, object],
                 fence_column: str, strict: bool) -> None:
        if isinstance(conn, sqlite3.Connection):
            self.mark, self.percent = "?", "%"
        elif type(conn).__module__.startswith("psycopg"):
            self.mark, self.percent = "%s", "%%"  # a literal % in psycopg SQL is written %%
            if conn.closed and not conn.broken:  # broken: the server or the network ended it
                raise ConfigurationError("conn is a psycopg connection that was closed; pass an open connection")
        else:
            raise InvalidArgumentType(f"conn must be a sqlite3 or psycopg Connection, not {type(conn).__name__}")
        if not isinstance(strict, bool):
            raise InvalidArgumentType(f"strict must be a bool, not {type(strict).__name__}")
        for what, mapping in (("key", key), ("values", values)):
            if not isinstance(mapping, Mapping):
                raise InvalidArgumentType(f"{what} must be a mapping of column names to values")
        if not key:
            raise InvalidArgument("key must name at least one column")
        if fence_column in key or fence_column in values:
            raise InvalidArgument(f"{fence_column!r} is the fence column; it is set from the token")
        if set(key) & set(values):
            raise InvalidArgument(f"columns {sorted(set(key) & set(values))} are in both key and values")
        self.conn = conn
        self.table_name = table
        self.table = ".".join(self._quote(part, "table") for part in _parts(table))
        self.fence = self._quote(fence_column, "fence_column")
        self.key_columns = [self._quote(column, "key column") for column in key]
        self.value_columns = [self._quote(column, "column") for column in values]
        self.keys, self.values = list(key.values()), list(values.values())
        self.key_condition = " AND ".join(f"{column} = {self.mark}" for column in self.key_columns)
        self.key_repr = dict(key)
        self.strict = strict

    def _quote(self, name: object, what: str) -> str:
        if not isinstance(name, str):
            raise InvalidArgumentType(f"{what} name must be a str, not {type(name).__name__}")
        if not name or "\x00" in name:
            raise InvalidArgument(f"{what} name {name!r} must be non-empty and without NUL")
        return '"' + name.replace('"', '""').replace("%", self.percent) + '"'

    def run(self, statement: str, params: tuple[object, ...], token: object) -> RowWriteResult:
        checked = check_store_token(token)
        with mapped_db_errors(f"table {self.table_name!r}"):
            changed = self.conn.execute(statement, params).rowcount
            if changed == 1:
                return RowWriteResult(True, checked)
            if changed > 1:
                raise InvalidArgument(
                    f"{self.key_repr!r} matches {changed} rows of {self.table_name!r}: a fenced write needs a key "
                    "that identifies one row (roll back: every matching row was changed in your transaction)"
                )
            return self.refusal(checked)

    def refusal(self, checked: int) -> RowWriteResult:
        """Why the statement changed no row: read the fence that refused it (in the same
        transaction, after the statement's row lock, so it is that fence or a later,
        larger one), or report that no row matches the key."""
        row = self.conn.execute(f"SELECT {self.fence} FROM {self.table} WHERE {self.key_condition}",
                                tuple(self.keys)).fetchone()
        if row is None:
            return RowWriteResult(False, None, f"no row of {self.table_name!r} matches {self.key_repr!r}")
        fence = int(row[0])
        relation = "<=" if self.strict and fence == checked else "<"
        return RowWriteResult(False, fence, f"stale token {checked} {relation} {fence}")


def _parts(table: object) -> list[object]:
    """``schema.table`` -> its parts; anything else is left for ``_quote`` to refuse."""
    if isinstance(table, str):
        return list(table.split("."))
    return [table]
