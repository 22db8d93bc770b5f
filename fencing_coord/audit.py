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

Records are built and handed to the handlers by a background thread, in the order the
decisions were taken: a writer only queues its decision, so formatting and writing the
log line overlap the store's I/O instead of adding to it (measured on a durable SQLite
write: ~140 us of CPU per record when done inline). Each record still carries the time
and the thread of its decision. :func:`flush` waits until every queued record has been
handled; it runs at interpreter exit too.

SQL stores can also keep the decisions of their writes in a table, in the same
transaction as the decision (``SQLiteStore(path, audit=True)``,
``PostgresStore(dsn, audit=True)``; see :mod:`fencing_coord.stores.sql`).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

__all__ = ["AuditNote", "AuditRow", "Decision", "decision_of", "enabled", "flush", "log_decision"]

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


@dataclass(frozen=True, slots=True)
class _Decided:
    """One decision on its way to the emitting thread."""

    operation: str
    resource: str
    key: str
    token: int | None
    highest: int | None
    decision: str
    mode: str
    holder: str | None
    created: float
    thread: int
    thread_name: str


_MESSAGE = "%s %s/%s token=%s highest=%s: %s (mode %s)"


class _Emitter:
    """The thread that turns queued decisions into log records (started on first use,
    again in a forked child)."""

    def __init__(self) -> None:
        self.queue: queue.Queue[_Decided] = queue.Queue()
        self.mutex = threading.Lock()
        self.thread: threading.Thread | None = None

    def submit(self, decided: _Decided) -> None:
        self.queue.put(decided)
        thread = self.thread
        if thread is None or not thread.is_alive():
            with self.mutex:
                if self.thread is None or not self.thread.is_alive():
                    self.thread = threading.Thread(target=self.run, name="fencing-coord-audit", daemon=True)
                    self.thread.start()

    def run(self) -> None:
        while True:
            decided = self.queue.get()
            try:
                _log.handle(_record(decided))
            except Exception:  # a handler's own errors go to its handleError; this is the rest
                traceback.print_exc()
            finally:
                self.queue.task_done()

    def after_fork(self) -> None:
        self.queue = queue.Queue()
        self.mutex = threading.Lock()
        self.thread = None


_emitter = _Emitter()
os.register_at_fork(after_in_child=_emitter.after_fork)


def _record(d: _Decided) -> logging.LogRecord:
    """The log record of ``d``, stamped with the time and thread of the decision. Its
    ``pathname``/``lineno`` name this module (a decision's place is its resource and key,
    not a line of code)."""
    record = _log.makeRecord(
        _log.name, logging.INFO, __file__, 0, _MESSAGE,
        (d.operation, d.resource, d.key, d.token, d.highest, d.decision, d.mode), None, "log_decision",
        {"resource": d.resource, "key": d.key, "token": d.token, "highest": d.highest, "decision": d.decision,
         "mode": d.mode, "holder": d.holder, "operation": d.operation},
    )
    record.relativeCreated -= (record.created - d.created) * 1000  # before created is replaced
    record.created = d.created
    record.msecs = (d.created - int(d.created)) * 1000
    record.thread, record.threadName = d.thread, d.thread_name
    return record


def log_decision(operation: str, resource: str, key: str, token: int | None, highest: int | None,
                 decision: str, mode: str, holder: str | None) -> None:
    """Log one decision (see the module doc for the record's attributes): queue it for
    the emitting thread when the audit logger is enabled for INFO."""
    if not _log.isEnabledFor(logging.INFO):
        return
    current = threading.current_thread()
    _emitter.submit(_Decided(operation, resource, key, token, highest, str(decision), str(mode), holder,
                             time.time(), current.ident or 0, current.name))


def flush(timeout: float | None = None) -> bool:
    """Wait until every decision logged so far has been handed to the handlers; True if
    that happened within ``timeout`` seconds (None: no limit)."""
    pending = _emitter.queue
    if timeout is None:
        pending.join()
        return True
    deadline = time.monotonic() + timeout
    with pending.all_tasks_done:
        while pending.unfinished_tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pending.all_tasks_done.wait(remaining)
    return True


atexit.register(flush, 5.0)
