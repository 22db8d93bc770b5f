"""What the SQL stores (SQLite, PostgreSQL) share: the statements that are the same in
both dialects, the plain operations, and the fenced read.

Both keep two tables, created on first use (exact DDL in each store's module)::

    fc_resource(name TEXT PRIMARY KEY, highest_token <64-bit int> NOT NULL, ...)
    fc_value(resource TEXT, key TEXT, value <bytes> NOT NULL, PRIMARY KEY (resource, key))

A fenced read first reads the highest token and the value together in one statement
(one snapshot). If the snapshot already decides the read (the token is refused, or it
equals the highest token, so there is nothing to raise) that answer is exact: the
highest token only grows, and both were read at the same instant. Only a token above
the highest one takes the store's locking path (:meth:`SQLStore._raise_and_read`), so
repeated fenced reads by one holder cost one plain ``SELECT``.

Opened with ``audit=True``, a store also keeps ``fc_audit`` (one row per decision of a
gated write, inserted in the transaction that took the decision: id, at, resource, key,
token, highest, decision, mode, holder); :meth:`SQLStore.recent_decisions` reads it
back. Writes without a token and the gate's ``off`` mode take no decision in the store
and are audited in the log only (:mod:`fencing_coord.audit`), as are fenced reads.

Every statement is parameterized; names, keys and values never become SQL text.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from ..audit import AuditRow
from ..errors import InvalidArgument, InvalidArgumentType
from .base import FencedOutcome, Store, admits
from .dberrors import mapped_db_errors

__all__ = ["SELECT_HIGHEST", "SELECT_SNAPSHOT", "SELECT_VALUE", "UPSERT_VALUE", "SQLStore", "as_bytes", "audit_rows",
           "decided_by_snapshot"]

# Written with "?" placeholders; PostgreSQL's store turns them into "%s".
SELECT_HIGHEST = "SELECT highest_token FROM fc_resource WHERE name = ?"
SELECT_VALUE = "SELECT value FROM fc_value WHERE resource = ? AND key = ?"
# No row when the resource has no token yet; then the locking path reads the value.
SELECT_SNAPSHOT = (
    "SELECT r.highest_token, v.value FROM fc_resource r"
    " LEFT JOIN fc_value v ON v.resource = r.name AND v.key = ? WHERE r.name = ?"
)
UPSERT_VALUE = (
    "INSERT INTO fc_value (resource, key, value) VALUES (?, ?, ?)"
    " ON CONFLICT (resource, key) DO UPDATE SET value = excluded.value"
)
INSERT_AUDIT = (
    "INSERT INTO fc_audit (resource, key, token, highest, decision, mode, holder) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
SELECT_AUDIT = (
    "SELECT at, resource, key, token, highest, decision, mode, holder FROM fc_audit"
    " WHERE resource = ? ORDER BY id DESC LIMIT ?"
)


class SQLStore(Store):
    """Base of the SQL stores: implements the plain operations and the fenced read on
    top of :meth:`_query` (one statement, committed on its own); a subclass adds the
    atomic :meth:`fenced_write` and :meth:`_raise_and_read`."""

    #: Names the store in error messages ("SQLite store state.db").
    what: str = "SQL store"

    @abstractmethod
    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run one ``?``-style statement in its own transaction; return its rows."""

    @abstractmethod
    def _raise_and_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        """The locking path of a fenced read: in one transaction, admit ``token``,
        raise the highest token to it and read the value after the raise."""

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        with mapped_db_errors(self.what):
            rows = self._query(SELECT_SNAPSHOT, (key, resource))
        decided = decided_by_snapshot(rows, token, strict)
        return self._raise_and_read(resource, key, token, strict) if decided is None else decided

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        with mapped_db_errors(self.what, writing=True):
            self._query(UPSERT_VALUE, (resource, key, value))

    def plain_read(self, resource: str, key: str) -> bytes | None:
        with mapped_db_errors(self.what):
            rows = self._query(SELECT_VALUE, (resource, key))
        return _as_bytes(rows[0][0]) if rows else None

    def recent_decisions(self, resource: str, limit: int = 20) -> list[AuditRow]:
        if not self.audit:
            return super().recent_decisions(resource, limit)
        if type(limit) is not int:
            raise InvalidArgumentType(f"limit must be an int, not {type(limit).__name__}")
        if limit < 1:
            raise InvalidArgument(f"limit must be >= 1, got {limit}")
        with mapped_db_errors(self.what):
            rows = self._query(SELECT_AUDIT, (resource, limit))
        return audit_rows(rows)

    def highest_token(self, resource: str) -> int | None:
        with mapped_db_errors(self.what):
            rows = self._query(SELECT_HIGHEST, (resource,))
        return int(rows[0][0]) if rows else None

    def __repr__(self) -> str:
        return f"<{self.what}>"


def audit_rows(rows: list[tuple[Any, ...]]) -> list[AuditRow]:
    """Rows of :data:`SELECT_AUDIT` as :class:`AuditRow` (``at`` as ISO 8601 text: SQLite
    stores text, PostgreSQL returns a datetime)."""
    return [AuditRow(at if isinstance(at, str) else at.isoformat(), *rest) for at, *rest in rows]


def decided_by_snapshot(rows: list[tuple[Any, ...]], token: int, strict: bool) -> FencedOutcome | None:
    """A fenced read's outcome when the SELECT_SNAPSHOT ``rows`` decide it (see the module
    docstring); None when the token is above the highest: take the locking path."""
    highest, value = rows[0] if rows else (None, None)
    if highest == token and not strict:  # admitted, nothing to raise: the usual case
        return FencedOutcome(True, highest, _as_bytes(value))
    if not admits(highest, token, strict):
        return FencedOutcome(False, highest)
    return None


def as_bytes(value: object) -> bytes | None:
    """Drivers return BLOB/BYTEA as bytes or memoryview; callers always get bytes."""
    return _as_bytes(value)


def _as_bytes(value: object) -> bytes | None:
    """Drivers return BLOB/BYTEA as bytes or memoryview; callers always get bytes."""
    return None if value is None else bytes(value)  # type: ignore[call-overload]
