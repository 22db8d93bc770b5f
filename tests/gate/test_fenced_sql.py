"""Pattern A on the user's own tables, on SQLite and on PostgreSQL."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fencing_coord.errors import (
    BackendUnavailable,
    ConfigurationError,
    InvalidArgument,
    InvalidArgumentType,
    RowNotFound,
    StaleTokenError,
)
from fencing_coord.stores.fenced_sql import RowReadResult, RowWriteResult, fenced_select, fenced_update, fenced_upsert

from .gate_workers import CounterHarness, mp_context, open_sql_connection, pattern_a_writer, writer_tokens
from .row_counter import RowCounterSpec, row_counter_worker

DDL = ("CREATE TABLE positions (account_id BIGINT PRIMARY KEY, qty BIGINT, avg_px DOUBLE PRECISION,"
       " note TEXT, fence BIGINT)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(kind, path or DSN) of an empty database with the ``positions`` table."""
    kind: str = request.param
    where = str(tmp_path / "app.db") if kind == "sqlite" else request.getfixturevalue("postgres_dsn")
    conn = open_sql_connection(kind, where)
    conn.execute(DDL)
    conn.commit()
    conn.close()
    return kind, where


@pytest.fixture
def conn(target: tuple[str, str]) -> Iterator[Any]:
    connection = open_sql_connection(*target)
    yield connection
    connection.close()


def row(conn: Any) -> tuple[Any, ...] | None:
    """Account 1's (qty, avg_px, note, fence)."""
    found: tuple[Any, ...] | None = conn.execute(
        "SELECT qty, avg_px, note, fence FROM positions WHERE account_id = 1").fetchone()
    return found


def test_upsert_creates_then_updates_the_row(conn: Any) -> None:
    first = fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 10, "avg_px": 1.5}, token=4)
    assert first == RowWriteResult(True, 4)
    assert fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 11}, token=6).accepted
    conn.commit()
    assert row(conn) == (11, 1.5, None, 6)


def test_update_with_a_stale_token_is_refused_and_changes_nothing(conn: Any) -> None:
    fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 10}, token=5)
    result = fenced_update(conn, "positions", {"account_id": 1}, {"qty": 99}, token=3)
    assert result == RowWriteResult(False, 5, "stale token 3 < 5")
    with pytest.raises(StaleTokenError, match="stale token 3 < 5"):
        result.raise_for_status()
    stale_insert = fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 98}, token=4)
    assert stale_insert == RowWriteResult(False, 5, "stale token 4 < 5")
    conn.commit()
    assert row(conn) == (10, None, None, 5)


def test_equal_token_is_accepted_unless_strict(conn: Any) -> None:
    fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 1}, token=5)
    assert fenced_update(conn, "positions", {"account_id": 1}, {"qty": 2}, token=5).accepted
    strict = fenced_update(conn, "positions", {"account_id": 1}, {"qty": 3}, token=5, strict=True)
    assert strict == RowWriteResult(False, 5, "stale token 5 <= 5")
    assert not fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 3}, token=5, strict=True).accepted
    assert fenced_update(conn, "positions", {"account_id": 1}, {"qty": 4}, token=6, strict=True).accepted
    conn.commit()
    assert row(conn) == (4, None, None, 6)


def test_a_key_matching_several_rows_is_refused_loudly(conn: Any) -> None:
    fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 1, "note": "a"}, token=5)
    fenced_upsert(conn, "positions", {"account_id": 2}, {"qty": 2, "note": "a"}, token=5)
    with pytest.raises(InvalidArgument, match="matches 2 rows"):
        fenced_update(conn, "positions", {"note": "a"}, {"qty": 9}, token=6)


def test_update_of_a_missing_row_says_so(conn: Any) -> None:
    result = fenced_update(conn, "positions", {"account_id": 2}, {"qty": 1}, token=1)
    assert not result.accepted
    assert result.fence is None
    assert result.reason == "no row of 'positions' matches {'account_id': 2}"


def test_a_null_fence_admits_any_token(conn: Any) -> None:
    conn.execute("INSERT INTO positions (account_id, qty) VALUES (1, 7)")
    assert fenced_update(conn, "positions", {"account_id": 1}, {"qty": 8}, token=0).accepted
    conn.commit()
    assert row(conn) == (8, None, None, 0)


def test_values_and_identifiers_with_metacharacters(conn: Any) -> None:
    conn.execute('CREATE TABLE "we""ird %s ?" ("k ""1""" TEXT, "k%2" TEXT, "v;--" TEXT, "fence col" BIGINT,'
                 ' PRIMARY KEY ("k ""1""", "k%2"))')
    key = {'k "1"': "x'; DROP TABLE positions; --", "k%2": "%(k)s ?"}
    result = fenced_upsert(conn, 'we"ird %s ?', key, {"v;--": "Robert'); --"}, token=3, fence_column="fence col")
    assert result.accepted
    assert not fenced_update(conn, 'we"ird %s ?', key, {"v;--": "late"}, token=2, fence_column="fence col").accepted
    conn.commit()
    stored = conn.execute('SELECT * FROM "we""ird %s ?"').fetchall()  # no parameters: no placeholders
    assert stored == [("x'; DROP TABLE positions; --", "%(k)s ?", "Robert'); --", 3)]
    assert row(conn) is None  # positions still exists


def test_bad_arguments_are_refused_before_any_sql(conn: Any) -> None:
    with pytest.raises(InvalidArgumentType, match="sqlite3 or psycopg Connection, not str"):
        fenced_update("conn", "positions", {"account_id": 1}, {}, token=1)
    with pytest.raises(InvalidArgument, match="key must name at least one column"):
        fenced_update(conn, "positions", {}, {"qty": 1}, token=1)
    with pytest.raises(InvalidArgument, match="'fence' is the fence column"):
        fenced_update(conn, "positions", {"account_id": 1}, {"fence": 1}, token=1)
    with pytest.raises(InvalidArgument, match="in both key and values"):
        fenced_upsert(conn, "positions", {"account_id": 1}, {"account_id": 2}, token=1)
    with pytest.raises(InvalidArgument, match="must be non-empty"):
        fenced_update(conn, "", {"account_id": 1}, {"qty": 1}, token=1)
    with pytest.raises(InvalidArgumentType, match="token must be an int, not bool"):
        fenced_update(conn, "positions", {"account_id": 1}, {"qty": 1}, token=True)
    with pytest.raises(InvalidArgument, match="token must be >= 0"):
        fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 1}, token=-1)


def test_database_errors_are_mapped(conn: Any) -> None:
    with pytest.raises(ConfigurationError, match="table 'missing'") as caught:
        fenced_update(conn, "missing", {"id": 1}, {"qty": 1}, token=1)
    assert caught.value.__cause__ is not None


def test_concurrent_writers_on_one_row(target: tuple[str, str]) -> None:
    """Eight processes, each on its own connection, update one row with interleaved
    tokens: the row ends with the highest token's values, and every refusal names a
    higher fence."""
    conn = open_sql_connection(*target)
    fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 0}, token=0)
    conn.commit()
    ctx = mp_context()
    start, results = ctx.Barrier(8), ctx.Queue()
    writers = [ctx.Process(target=pattern_a_writer, args=(*target, writer_tokens(w, 8, 25), start, results))
               for w in range(8)]
    for process in writers:
        process.start()
    outcomes = []
    for _ in writers:
        try:
            status, found, _ = results.get(timeout=120)
        except queue.Empty:
            raise AssertionError("a writer never reported") from None
        assert status == "ok", found
        outcomes += found
    for process in writers:
        process.join(30)
    refused = [(token, fence) for token, accepted, fence in outcomes if not accepted]
    assert refused
    assert all(fence > token for token, fence in refused)
    assert row(conn) == (200, None, None, 200)
    conn.close()


def test_a_closed_connection_is_a_configuration_error(target: tuple[str, str]) -> None:
    closed = open_sql_connection(*target)
    closed.close()
    for helper in (fenced_update, fenced_upsert):
        with pytest.raises(ConfigurationError, match="closed") as caught:
            helper(closed, "positions", {"account_id": 1}, {"qty": 1}, token=1)
        assert not caught.value.retryable


@pytest.mark.postgres
def test_a_connection_the_server_ended_is_unavailable(postgres_dsn: str) -> None:
    """Unlike a connection the caller closed, one the server terminated is a fault."""
    conn = psycopg.connect(postgres_dsn)
    conn.execute(DDL)
    conn.commit()
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    with pytest.raises(BackendUnavailable):
        fenced_update(conn, "positions", {"account_id": 1}, {"qty": 1}, token=1)
    assert conn.broken
    conn.close()


# -- the fenced read (read-modify-write) ----------------------------------------------


def test_fenced_select_reads_and_raises_the_fence_in_one_statement(conn: Any) -> None:
    fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 10, "note": "n"}, token=4)
    read = fenced_select(conn, "positions", {"account_id": 1}, ["qty", "note"], token=6)
    assert read == RowReadResult(True, 6, {"qty": 10, "note": "n"})
    assert read.raise_for_status() is read
    conn.commit()
    assert row(conn) == (10, None, "n", 6)
    # The holder of token 5 read before 6 did; its write now is refused.
    assert fenced_update(conn, "positions", {"account_id": 1}, {"qty": 11}, token=5) == RowWriteResult(
        False, 6, "stale token 5 < 6")
    assert fenced_update(conn, "positions", {"account_id": 1}, {"qty": 11}, token=6).accepted


def test_fenced_select_with_a_stale_token_is_refused_and_changes_nothing(conn: Any) -> None:
    fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 10}, token=6)
    read = fenced_select(conn, "positions", {"account_id": 1}, ["qty"], token=5)
    assert read == RowReadResult(False, 6, None, "stale token 5 < 6")
    with pytest.raises(StaleTokenError, match="stale token 5 < 6"):
        read.raise_for_status()
    assert fenced_select(conn, "positions", {"account_id": 1}, ["qty"], token=6, strict=True) == RowReadResult(
        False, 6, None, "stale token 6 <= 6")
    assert fenced_select(conn, "positions", {"account_id": 1}, ["qty"], token=6).values == {"qty": 10}
    conn.commit()
    assert row(conn) == (10, None, None, 6)


def test_a_missing_row_is_its_own_outcome_not_a_stale_token(conn: Any) -> None:
    """StaleTokenError means "you lost the lock"; a key that matches nothing is not that."""
    read = fenced_select(conn, "positions", {"account_id": 9}, ["qty"], token=1)
    assert read.missing
    assert read == RowReadResult(False, None, None, "no row of 'positions' matches {'account_id': 9}")
    write = fenced_update(conn, "positions", {"account_id": 9}, {"qty": 1}, token=1)
    assert write.missing
    for result in (read, write):
        with pytest.raises(RowNotFound, match="no row of 'positions' matches") as caught:
            result.raise_for_status()
        assert not isinstance(caught.value, StaleTokenError)
        assert isinstance(caught.value, LookupError)


def test_fenced_select_arguments(conn: Any) -> None:
    fenced_upsert(conn, "positions", {"account_id": 1}, {"qty": 1, "note": "a"}, token=5)
    fenced_upsert(conn, "positions", {"account_id": 2}, {"qty": 2, "note": "a"}, token=5)
    conn.commit()
    with pytest.raises(InvalidArgumentType, match="sequence of column names"):
        fenced_select(conn, "positions", {"account_id": 1}, "qty", token=5)
    with pytest.raises(InvalidArgument, match="matches 2 rows"):
        fenced_select(conn, "positions", {"note": "a"}, ["qty"], token=6)
    conn.rollback()
    assert fenced_select(conn, "positions", {"account_id": 1}, [], token=5).values == {}
    assert fenced_select(conn, "positions", {"account_id": 1}, ["qty", "qty"], token=5).values == {"qty": 1}


@pytest.mark.parametrize("documented", [True, False], ids=["fenced_select", "plain_select"])
def test_read_modify_write_under_paused_holders(target: tuple[str, str], documented: bool) -> None:
    """Two worker processes increment one row under memory:// locks; some holders are
    paused past their lease between their read and their write, and the successor reads
    before the paused one writes. The README's flow (fenced_select, then fenced_update)
    loses nothing; a plain SELECT before fenced_update loses one increment per pause."""
    spec = RowCounterSpec(*target)
    harness = CounterHarness(mp_context(), spec, fenced=documented, workers=2, increments=6,
                             worker=row_counter_worker)
    spec.create(harness.resource)
    report = harness.run()

    assert report.pauses >= 2
    assert report.paused_grants_lost, "a paused holder's lease had not expired"
    assert report.accepted == 2 * 6
    assert report.highest_seen == sorted(report.highest_seen)
    if documented:
        assert report.refused == report.pauses  # each late write refused, redone under a new grant
        assert report.final == report.accepted == 12
    else:
        assert report.refused == 0  # every late write went through...
        assert report.final == 12 - report.pauses  # ...over an increment it never saw
        assert report.final < report.accepted, "the naive flow lost nothing: the test could not fail"
