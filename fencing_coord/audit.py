"""The gate's audit trail: one structured log record per decision.

Every decision of a :class:`~fencing_coord.FencedResource` (a write, a fenced read, a
write without a token) is logged once to the logger ``fencing_coord.audit``, with these
attributes on the record (``logging``'s ``extra=``): ``resource``, ``key``, ``token``
(None: the write carried none), ``highest`` (the highest admitted token the decision was
taken against; None when there was none or it was not read), ``decision`` (a
:class:`Decision`), ``mode`` (the gate's mode), ``holder`` (None unless the caller said
who writes) and ``operation`` (``"write"`` or ``"read"``).

Levels (:func:`level_of`): what an operator must see is at INFO: ``refused``,
``would_refuse`` (shadow, canary) and ``no_token`` (a write that bypassed fencing). The
decisions of the normal path, ``admitted`` and ``unchecked`` (gate ``off``), are at
DEBUG: one per write, they would bury the rest and cost every write a log line. So
``logging.getLogger("fencing_coord.audit").setLevel(logging.INFO)`` (and a handler) logs
what went wrong or would have; ``logging.DEBUG`` logs every decision. A formatter or a
JSON handler can use the attributes directly. A decision whose level is not enabled
costs one level check.

Each record is built by the deciding thread (so it carries that thread and the time of
the decision) and handed to the handlers by a background thread, in the order the
decisions were taken: formatting and writing the log line overlap the store's I/O
instead of adding to it. Queuing a record takes no lock and wakes that thread only when
it sleeps. :func:`flush` waits until every queued record has been handled; it runs at
interpreter exit too.

SQL stores can also keep the decisions of their writes in a table, in the same
transaction as the decision (``SQLiteStore(path, audit=True)``,
``PostgresStore(dsn, audit=True)``; see :mod:`fencing_coord.stores.sql`).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

__all__ = ["AuditNote", "AuditRow", "Decision", "decision_of", "enabled", "flush", "level_of", "log_decision"]

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


#: The level of each decision's record (see the module doc); any other is INFO.
_LEVELS: dict[str, int] = {Decision.ADMITTED: logging.DEBUG, Decision.UNCHECKED: logging.DEBUG}


def level_of(decision: str) -> int:
    """The log level of a decision's record: DEBUG for ``admitted`` and ``unchecked``,
    INFO for the others (``refused``, ``would_refuse``, ``no_token``)."""
    return _LEVELS.get(decision, logging.INFO)


def enabled() -> bool:
    """True when some decisions are being logged (the audit logger is enabled for INFO,
    the level of refusals; see :func:`level_of`)."""
    return _log.isEnabledFor(logging.INFO)


_MESSAGE = "%s %s/%s token=%s highest=%s: %s (mode %s)"

#: How long the emitting thread waits for more records once it handled some (a record
#: reaches the handlers at most this much later than it would one at a time).
_BATCH_SECONDS = 0.01


@dataclass(frozen=True)
class _FlushMark:
    """Queued by :func:`flush`: set once every record queued before it was handled."""

    handled: threading.Event


class _Emitter:
    """The thread that hands queued records to the handlers (started on first use, again
    in a forked child).

    A writer appends to a deque (one atomic step, no lock) and wakes the thread only when
    it sleeps: no lock, condition or thread switch per decision while records keep
    coming. The thread drains the deque in order, then sleeps on :attr:`wake`.
    """

    def __init__(self) -> None:
        self.pending: collections.deque[logging.LogRecord | _FlushMark] = collections.deque()
        self.wake = threading.Event()
        #: True while the thread sleeps (or is about to): a writer must set ``wake``.
        self.idle = True
        self.mutex = threading.Lock()
        self.thread: threading.Thread | None = None
        #: What every record of this process at a level shares (see :func:`_new_record`),
        #: and logging's start time (for ``relativeCreated``).
        self.templates: dict[int, dict[str, object]] = {}
        self.started = 0.0

    def submit(self, item: logging.LogRecord | _FlushMark) -> None:
        self.pending.append(item)
        if self.idle:
            if self.thread is None:
                self.start()
            self.wake.set()

    def start(self) -> None:
        with self.mutex:
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name="fencing-coord-audit", daemon=True)
                self.thread.start()

    def run(self) -> None:
        pending, wake = self.pending, self.wake
        while True:
            self.idle = False
            # Linger while records keep coming: writers see the thread awake and append
            # without waking it, so a busy gate pays one wake-up per batch, not one per
            # decision (a wake-up and the GIL's hand-over cost more than the record).
            while self.drain():
                time.sleep(_BATCH_SECONDS)
            self.idle = True
            wake.clear()
            # A writer that appended before ``idle`` was set did not wake us: look again.
            if not pending:
                wake.wait()

    def drain(self) -> bool:
        """Hand every queued record to the handlers; True if there was any."""
        pending = self.pending
        if not pending:
            return False
        while pending:
            item = pending.popleft()
            if isinstance(item, _FlushMark):
                item.handled.set()
                continue
            try:
                _log.handle(item)
            except Exception:  # a handler's own errors go to its handleError; this is the rest
                traceback.print_exc()
        return True

    def after_fork(self) -> None:
        self.__init__()  # type: ignore[misc]  # the parent's thread and records are not ours


_emitter = _Emitter()
os.register_at_fork(after_in_child=_emitter.after_fork)


def _new_record(level: int, operation: str, resource: str, key: str, token: int | None, highest: int | None,
                decision: str, mode: str, holder: str | None) -> logging.LogRecord:
    """The log record of one decision, built in the deciding thread (so it carries that
    thread and the time of the decision). Its ``pathname``/``lineno`` name this module (a
    decision's place is its resource and key, not a line of code).

    With logging's default record factory, the record is a copy of a template made once
    per process by ``makeRecord`` with the fields of this decision filled in: about a
    tenth of what ``makeRecord`` costs (it splits the path and looks up the process on
    each call). A custom factory (``logging.setLogRecordFactory``) is called for every
    record, as usual.
    """
    args = (operation, resource, key, token, highest, decision, mode)
    extra = {"resource": resource, "key": key, "token": token, "highest": highest, "decision": decision,
             "mode": mode, "holder": holder, "operation": operation}
    if logging.getLogRecordFactory() is not logging.LogRecord:
        return _log.makeRecord(_log.name, level, __file__, 0, _MESSAGE, args, None, "log_decision", extra)
    template = _emitter.templates.get(level)
    if template is None:
        model = _log.makeRecord(_log.name, level, __file__, 0, _MESSAGE, (), None, "log_decision")
        _emitter.started = model.created - model.relativeCreated / 1000
        template = _emitter.templates[level] = dict(model.__dict__)
    record = logging.LogRecord.__new__(logging.LogRecord)
    fields = record.__dict__
    fields.update(template)
    fields.update(extra)
    created = time.time()
    current = threading.current_thread()
    fields["args"] = args
    fields["created"] = created
    fields["msecs"] = (created - int(created)) * 1000
    fields["relativeCreated"] = (created - _emitter.started) * 1000
    fields["thread"] = current.ident
    fields["threadName"] = current.name
    if "taskName" in fields:  # Python 3.12+: the asyncio task that decided, as LogRecord does
        fields["taskName"] = _task_name()
    return record


def _task_name() -> str | None:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        task = asyncio.current_task()
    except Exception:  # no running loop
        return None
    return None if task is None else str(task.get_name())


def log_decision(operation: str, resource: str, key: str, token: int | None, highest: int | None,
                 decision: str, mode: str, holder: str | None) -> None:
    """Log one decision (see the module doc for the record's attributes and levels):
    build its record and queue it for the emitting thread when the audit logger is
    enabled for the decision's level; otherwise cost one level check."""
    level = _LEVELS.get(decision, logging.INFO)
    if not _log.isEnabledFor(level):
        return
    _emitter.submit(_new_record(level, operation, resource, key, token, highest, str(decision), str(mode), holder))


def flush(timeout: float | None = None) -> bool:
    """Wait until every decision logged so far has been handed to the handlers; True if
    that happened within ``timeout`` seconds (None: no limit)."""
    if _emitter.thread is None and not _emitter.pending:
        return True
    mark = _FlushMark(threading.Event())
    _emitter.submit(mark)
    return mark.handled.wait(timeout)


atexit.register(flush, 5.0)
