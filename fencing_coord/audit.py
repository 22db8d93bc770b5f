"""The gate's audit trail: one structured log record per decision.

Every decision of a :class:`~fencing_coord.FencedResource` (a write, a fenced read, a
write without a token) is logged once, at INFO, to the logger ``fencing_coord.audit``,
with these attributes on the record (``logging``'s ``extra=``): ``resource``, ``key``,
``token`` (None: the write carried none), ``highest`` (the highest admitted token the
decision was taken against; None when there was none or it was not read), ``decision``
(a :class:`Decision`), ``mode`` (the gate's mode), ``holder`` (None unless the caller
said who writes) and ``operation`` (``"write"`` or ``"read"``). Turn it on with
``logging.getLogger("fencing_coord.audit").setLevel(logging.INFO)`` and a handler; a
formatter or a JSON handler can use the attributes directly. While the logger is not
enabled for INFO, a decision costs one level check.

SQL stores can also keep the decisions of their writes in a table, in the same
transaction as the decision (``SQLiteStore(path, audit=True)``,
``PostgresStore(dsn, audit=True)``; see :mod:`fencing_coord.stores.sql`).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import NamedTuple

__all__ = ["AuditNote", "AuditRow", "Decision", "decision_of", "enabled", "log_decision"]

_log = logging.getLogger(__name__)


class Decision(StrEnum):
    """What the gate did with one operation."""

    #: The token was admitted; the operation happened.
    ADMITTED = "admitted"
    #: Stale token (or no token where one is required): refused, nothing changed.
    REFUSED = "refused"
    #: Not enforced here (shadow mode, or a canary's other resources): it would have been
    #: refused, and happened anyway.
    WOULD_REFUSE = "would_refuse"
    #: The gate is off: the operation happened, nothing was checked or recorded.
    UNCHECKED = "unchecked"
    #: A write without a token, applied (``require_token`` is off).
    NO_TOKEN = "no_token"


def decision_of(admitted: bool, shadow: bool) -> Decision:
    """The decision on a token: admitted, else refused (enforced) or would_refuse (shadow)."""
    if admitted:
        return Decision.ADMITTED
    return Decision.WOULD_REFUSE if shadow else Decision.REFUSED


class AuditNote(NamedTuple):
    """What the gate knows about a write that the store does not, for a store that
    writes its decisions to an audit table: the gate's ``mode`` and the ``holder``."""

    mode: str
    holder: str | None


class AuditRow(NamedTuple):
    """One decision read back from a store's audit table, newest first. ``at`` is the
    database's time of the decision, ISO 8601 (UTC)."""

    at: str
    resource: str
    key: str
    token: int | None
    highest: int | None
    decision: str
    mode: str
    holder: str | None


def enabled() -> bool:
    """True when decisions are being logged (the audit logger is enabled for INFO)."""
    return _log.isEnabledFor(logging.INFO)


def log_decision(operation: str, resource: str, key: str, token: int | None, highest: int | None,
                 decision: str, mode: str, holder: str | None) -> None:
    """Log one decision (see the module doc for the record's attributes).

    The record is built directly rather than through ``Logger.info``, which would walk
    the stack to find the caller's line for every decision: its ``pathname``/``lineno``
    name this function (a decision's place is its resource and key, not a line of code).
    """
    if not _log.isEnabledFor(logging.INFO):
        return
    record = _log.makeRecord(
        _log.name, logging.INFO, __file__, 0, "%s %s/%s token=%s highest=%s: %s (mode %s)",
        (operation, resource, key, token, highest, decision, mode), None, "log_decision",
        {"resource": resource, "key": key, "token": token, "highest": highest, "decision": str(decision),
         "mode": str(mode), "holder": holder, "operation": operation},
    )
    _log.handle(record)
