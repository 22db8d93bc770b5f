"""The audit trail: one structured log record per gate decision, and the SQL stores'
optional audit table, written in the decision's transaction."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from fencing_coord import audit
from fencing_coord.audit import AuditRow
from fencing_coord.errors import ConfigurationError, InvalidArgument, NotSupported
from fencing_coord.gate import FencedResource
from fencing_coord.stores import MemoryStore, PostgresStore, SQLiteStore, Store

FIELDS = ("resource", "key", "token", "highest", "decision", "mode", "holder", "operation")


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [{f: getattr(r, f) for f in FIELDS} for r in caplog.records if r.name == "fencing_coord.audit"]


def test_each_decision_is_one_structured_log_record(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    resource = FencedResource(store)
    with caplog.at_level(logging.DEBUG, logger="fencing_coord.audit"):  # DEBUG: admitted decisions too
        started = time.time()
        resource.write("orders", "k", b"9", token=9, holder="worker-1")
        resource.write("orders", "k", b"7", token=7)
        resource.read("orders", "k", token=9, holder="worker-1")
        resource.write_without_token("orders", "k2", b"legacy")
        resource.mode = "shadow"
        resource.write("orders", "k", b"8", token=8, holder="worker-0")
        ended = time.time()
        assert audit.flush(30.0)  # records are emitted by a background thread
    # Stamped with the decision's time and thread, not the emitting thread's.
    records = [r for r in caplog.records if r.name == "fencing_coord.audit"]
    assert {r.threadName for r in records} == {threading.current_thread().name}
    assert all(started <= r.created <= ended for r in records)
    assert audit_records(caplog) == [
        dict(resource="orders", key="k", token=9, highest=None, decision="admitted", mode="enforce",
             holder="worker-1", operation="write"),
        dict(resource="orders", key="k", token=7, highest=9, decision="refused", mode="enforce", holder=None,
             operation="write"),
        dict(resource="orders", key="k", token=9, highest=9, decision="admitted", mode="enforce",
             holder="worker-1", operation="read"),
        dict(resource="orders", key="k2", token=None, highest=None, decision="no_token", mode="enforce",
             holder=None, operation="write"),
        dict(resource="orders", key="k", token=8, highest=9, decision="would_refuse", mode="shadow",
             holder="worker-0", operation="write"),
    ]
    assert "write orders/k token=7 highest=9: refused (mode enforce)" in caplog.messages
    assert [r.levelname for r in records] == ["DEBUG", "INFO", "DEBUG", "INFO", "INFO"]


def test_at_info_only_what_went_wrong_or_would_have_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Admitted and unchecked decisions are DEBUG; refused, would_refuse and no_token INFO."""
    resource = FencedResource(MemoryStore())
    with caplog.at_level(logging.INFO, logger="fencing_coord.audit"):
        resource.write("orders", "k", b"9", token=9)
        resource.write("orders", "k", b"7", token=7)
        resource.write_without_token("orders", "k", b"legacy")
        resource.mode = "shadow"
        resource.write("orders", "k", b"8", token=8)
        resource.write("orders", "k", b"10", token=10)
        resource.mode = "off"
        resource.write("orders", "k", b"1", token=1)
        assert audit.flush(30.0)
        assert audit.enabled()
    records = [r for r in caplog.records if r.name == "fencing_coord.audit"]
    assert [(r.decision, r.token, r.levelno) for r in records] == [  # type: ignore[attr-defined]
        ("refused", 7, logging.INFO), ("no_token", None, logging.INFO), ("would_refuse", 8, logging.INFO)]
    assert [audit.level_of(d) for d in audit.Decision] == [
        logging.DEBUG, logging.INFO, logging.INFO, logging.DEBUG, logging.INFO]


def test_nothing_is_logged_while_the_audit_logger_is_off(caplog: pytest.LogCaptureFixture) -> None:
    resource = FencedResource(MemoryStore())
    with caplog.at_level(logging.WARNING, logger="fencing_coord.audit"):
        resource.write("orders", "k", b"9", token=9)
        resource.write("orders", "k", b"7", token=7)
        assert audit.flush(30.0)
    assert audit_records(caplog) == []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def audited(request: pytest.FixtureRequest) -> Iterator[tuple[Store, str]]:
    """A SQL store with its audit table, and the kind of store."""
    kind: str = request.param
    if kind == "sqlite":
        with SQLiteStore(request.getfixturevalue("sqlite_path"), audit=True) as sqlite_store:
            yield sqlite_store, kind
    else:
        with PostgresStore(request.getfixturevalue("postgres_dsn"), audit=True) as pg_store:
            yield pg_store, kind


def test_the_audit_table_keeps_each_write_decision(audited: tuple[Store, str]) -> None:
    store, _ = audited
    resource = FencedResource(store)
    resource.write("orders", "k", b"9", token=9, holder="worker-1")
    resource.write("orders", "k", b"7", token=7, holder="worker-0")
    resource.mode = "shadow"
    resource.write("orders", "k", b"6", token=6)
    resource.write("other", "k", b"1", token=1)
    rows = store.recent_decisions("orders")
    assert [row[1:] for row in rows] == [
        ("orders", "k", 6, 9, "would_refuse", "shadow", None),
        ("orders", "k", 7, 9, "refused", "enforce", "worker-0"),
        ("orders", "k", 9, None, "admitted", "enforce", "worker-1"),
    ]
    assert all(isinstance(row, AuditRow) and row.at[:2] == "20" for row in rows)
    assert len(store.recent_decisions("orders", limit=1)) == 1
    with pytest.raises(InvalidArgument, match="limit must be >= 1"):
        store.recent_decisions("orders", limit=0)


def test_the_audit_row_is_in_the_decision_s_transaction(audited: tuple[Store, str], sqlite_path: str,
                                                         request: pytest.FixtureRequest) -> None:
    """If the audit row cannot be written, the decision is rolled back with it."""
    store, kind = audited
    resource = FencedResource(store)
    resource.write("orders", "k", b"5", token=5)
    if kind == "sqlite":
        with sqlite3.connect(sqlite_path) as conn:
            conn.execute("DROP TABLE fc_audit")
    else:
        with psycopg.connect(request.getfixturevalue("postgres_dsn"), autocommit=True) as pg:
            pg.execute("DROP TABLE fc_audit")
    with pytest.raises(ConfigurationError, match="fc_audit"):
        resource.write("orders", "k", b"8", token=8)
    assert (resource.read("orders", "k"), resource.highest_token("orders")) == (b"5", 5)
    resource.mode = "shadow"
    with pytest.raises(ConfigurationError, match="fc_audit"):
        resource.write("orders", "k", b"3", token=3)
    assert resource.read("orders", "k") == b"5"


def test_stores_without_an_audit_table_say_so(sqlite_path: str) -> None:
    with pytest.raises(NotSupported, match="keeps no audit table"):
        MemoryStore().recent_decisions("orders")
    with SQLiteStore(sqlite_path) as plain, pytest.raises(NotSupported, match="audit=True"):
        plain.recent_decisions("orders")


class _Gate(logging.Handler):
    """A handler that holds every record until released, and fails on the first one."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.seen: list[logging.LogRecord] = []

    def handle(self, record: logging.LogRecord) -> bool:
        self.go.wait(30.0)
        self.seen.append(record)
        if len(self.seen) == 1:
            raise RuntimeError("handler failed")
        return True


def test_flush_waits_for_the_handlers_and_a_failing_handler_stops_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    audit_log = logging.getLogger("fencing_coord.audit")
    handler = _Gate()
    audit_log.addHandler(handler)
    audit_log.setLevel(logging.DEBUG)  # the admitted decision too
    try:
        resource = FencedResource(MemoryStore())
        resource.write("orders", "k", b"9", token=9)
        resource.write("orders", "k", b"7", token=7)
        assert not audit.flush(0.05)  # held by the handler
        handler.go.set()
        assert audit.flush(30.0)
    finally:
        audit_log.removeHandler(handler)
        audit_log.setLevel(logging.NOTSET)
    assert [r.decision for r in handler.seen] == ["admitted", "refused"]  # type: ignore[attr-defined]
    assert "RuntimeError: handler failed" in capsys.readouterr().err


def test_a_record_has_what_makerecord_gives_it(caplog: pytest.LogCaptureFixture) -> None:
    """Records are copied from a per-process template (cheaper than makeRecord): every
    attribute logging sets is there, with this decision's time, thread and fields."""
    audit_log = logging.getLogger("fencing_coord.audit")
    with caplog.at_level(logging.DEBUG, logger="fencing_coord.audit"):
        FencedResource(MemoryStore()).write("orders", "k", b"9", token=9, holder="w")
        FencedResource(MemoryStore()).write("orders", "k", b"9", token=10, holder="w")
        assert audit.flush(30.0)
        reference = audit_log.makeRecord(audit_log.name, logging.DEBUG, audit.__file__, 0, "m", (), None, "x")
    first, second = [r for r in caplog.records if r.name == "fencing_coord.audit"]
    assert set(vars(reference)) <= set(vars(first))
    for name in ("levelname", "levelno", "pathname", "filename", "module", "process", "processName"):
        assert getattr(first, name) == getattr(reference, name), name
    assert (first.funcName, first.thread) == ("log_decision", threading.get_ident())
    assert first.token == 9  # type: ignore[attr-defined]
    assert second.token == 10  # type: ignore[attr-defined]
    assert first.args != second.args
    assert first.created <= second.created
    started = reference.created - reference.relativeCreated / 1000
    assert abs(first.relativeCreated - (first.created - started) * 1000) < 1.0
    assert first.msecs == pytest.approx((first.created - int(first.created)) * 1000)


def test_a_custom_record_factory_makes_every_record(caplog: pytest.LogCaptureFixture) -> None:
    made: list[logging.LogRecord] = []
    default = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = default(*args, **kwargs)
        record.request_id = f"req-{len(made)}"
        made.append(record)
        return record

    logging.setLogRecordFactory(factory)
    try:
        with caplog.at_level(logging.DEBUG, logger="fencing_coord.audit"):
            resource = FencedResource(MemoryStore())
            resource.write("orders", "k", b"9", token=9)
            resource.write("orders", "k", b"7", token=7)
            assert audit.flush(30.0)
    finally:
        logging.setLogRecordFactory(default)
    records = [r for r in caplog.records if r.name == "fencing_coord.audit"]
    assert [r.request_id for r in records] == ["req-0", "req-1"]  # type: ignore[attr-defined]
    assert [r.decision for r in records] == ["admitted", "refused"]  # type: ignore[attr-defined]


def test_a_burst_of_decisions_wakes_the_emitting_thread_once_per_batch(caplog: pytest.LogCaptureFixture,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       sqlite_path: str) -> None:
    # Waking the emitter for every record cost a busy gate more than the record itself
    # (a fenced SQLite write logged at DEBUG: 1.86x the CPU of an unlogged one).
    assert audit.flush(30.0)
    wakes = 0
    real_set = audit._emitter.wake.set

    def counting_set() -> None:
        nonlocal wakes
        wakes += 1
        real_set()

    monkeypatch.setattr(audit._emitter.wake, "set", counting_set)
    # Durable SQLite writes: a real gate's pace, where the emitter used to fall asleep
    # between two decisions.
    resource = FencedResource(SQLiteStore(sqlite_path))
    with caplog.at_level(logging.DEBUG, logger="fencing_coord.audit"):
        for token in range(1, 201):
            resource.write("orders", "k", b"v", token=token)
        assert audit.flush(30.0)
    assert len(audit_records(caplog)) == 200
    assert wakes <= 50, f"{wakes} wake-ups for 200 decisions"
