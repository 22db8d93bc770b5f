"""Store-specific behaviour: schemas, error mapping at the edge, the lazy imports, and the
local PostgreSQL server manager."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import fencing_coord.stores as stores
from fencing_coord.errors import (
    BackendUnavailable,
    ConfigurationError,
    InvalidArgument,
    InvalidArgumentType,
    StaleTokenError,
)
from fencing_coord.gate import FencedResource
from fencing_coord.servers import free_port
from fencing_coord.servers.postgres import PostgresServer
from fencing_coord.stores import PostgresStore, SQLiteStore

from .gate_workers import mp_context, open_sqlite_together


def test_sqlite_schema_and_wal_mode(sqlite_path: str) -> None:
    SQLiteStore(sqlite_path).close()
    with sqlite3.connect(sqlite_path) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"fc_resource", "fc_value"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.postgres
def test_sqlite_file_opened_by_many_processes_at_once(tmp_path: Path) -> None:
    """Creating a store switches the file to WAL, which SQLite refuses at once while
    another process has the file: processes starting together must not fail on it."""
    ctx = mp_context()
    for round_ in range(25):
        path = str(tmp_path / f"new-{round_}.db")
        start = ctx.Barrier(8)
        procs = [ctx.Process(target=open_sqlite_together, args=(path, start)) for _ in range(8)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0] * 8
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_postgres_schema_is_created_on_first_use(postgres_dsn: str) -> None:
    PostgresStore(postgres_dsn).close()
    with psycopg.connect(postgres_dsn) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position").fetchall()
    assert columns == [
        ("fc_resource", "name", "text"), ("fc_resource", "highest_token", "bigint"),
        ("fc_resource", "previous_token", "bigint"),
        ("fc_value", "resource", "text"), ("fc_value", "key", "text"), ("fc_value", "value", "bytea"),
    ]


def test_sqlite_busy_database_is_unavailable_and_retryable(sqlite_path: str) -> None:
    store = SQLiteStore(sqlite_path, timeout=0.05)
    blocker = sqlite3.connect(sqlite_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(BackendUnavailable, match="is unavailable: database is locked") as caught:
        FencedResource(store).write("orders", "k", b"v", token=1)
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    blocker.execute("ROLLBACK")
    assert FencedResource(store).write("orders", "k", b"v", token=1).accepted
    blocker.close()
    store.close()


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, but long enough to have a header " * 20)
    with pytest.raises(ConfigurationError, match="file is not a database; retrying will not help"):
        SQLiteStore(path)
    with pytest.raises(ConfigurationError, match="unable to open database file"):
        SQLiteStore(tmp_path / "missing-dir" / "x.db")


def test_store_constructor_arguments(sqlite_path: str) -> None:
    with pytest.raises(InvalidArgumentType, match=r"path must be a str or os\.PathLike, not int"):
        SQLiteStore(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="synchronous must be one of"):
        SQLiteStore(sqlite_path, synchronous="FULL; DROP TABLE x")
    with pytest.raises(InvalidArgument, match="timeout must be > 0 seconds"):
        SQLiteStore(sqlite_path, timeout=0)
    with pytest.raises(InvalidArgumentType, match="dsn must be a str, not NoneType"):
        PostgresStore(None)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_postgres_unreachable_is_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match=r"PostgreSQL store .*password=\*\*\*.* is unavailable") as caught:
        PostgresStore(f"postgresql://fc:secret@127.0.0.1:{free_port()}/db", connect_timeout=2)
    assert "secret" not in str(caught.value)
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


@pytest.mark.postgres
@pytest.mark.parametrize(("option", "message"), [("dbname", 'database "fc_no_such_db" does not exist'),
                                                 ("user", 'role "fc_no_such_db" does not exist')])
def test_postgres_missing_database_or_role_is_a_configuration_error(postgres_dsn: str, option: str,
                                                                    message: str) -> None:
    """Retrying cannot create them: ConfigurationError (not the retryable BackendUnavailable)."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        PostgresStore(make_conninfo(postgres_dsn, **{option: "fc_no_such_db"}), connect_timeout=5)
    assert not caught.value.retryable
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


@pytest.mark.postgres
def test_postgres_broken_connection_is_unavailable_then_replaced(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    resource = FencedResource(store)
    resource.write("orders", "k", b"v", token=1)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                      " AND datname = current_database() AND backend_type = 'client backend'")
    with pytest.raises(BackendUnavailable):
        resource.write("orders", "k", b"w", token=2)
    # The broken connection was dropped; the next call gets a fresh one.
    assert resource.read("orders", "k") in (b"v", b"w")
    assert resource.write("orders", "k", b"x", token=3).accepted
    store.close()


def test_store_package_imports_no_coordination_client() -> None:
    code = ("import sys, fencing_coord.stores, fencing_coord.gate;"
            " print(sorted(m for m in ('etcd3', 'kazoo', 'psycopg', 'redis', 'boto3', 'botocore')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_store_attribute() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchStore'"):
        stores.NoSuchStore  # noqa: B018
    expected = {"EtcdStore", "ZooKeeperStore", "MemoryStore", "SQLiteStore", "PostgresStore", "RedisStore", "S3Store"}
    assert expected <= set(stores.__all__)
    assert stores.S3Store.__module__ == "fencing_coord.stores.s3"


@pytest.mark.postgres
def test_postgres_server_without_binaries(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"binaries \(initdb, postgres\) not found in"):
        PostgresServer(bin_dir=tmp_path).start()


@pytest.mark.postgres
@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop is used only as root")
def test_postgres_server_needs_a_user_when_root() -> None:
    with pytest.raises(ConfigurationError, match="useradd --system --no-create-home fc-nobody-here"):
        PostgresServer(run_as="fc-nobody-here").start()


@pytest.mark.postgres
def test_postgres_server_stop_removes_its_data() -> None:
    server = PostgresServer().start()
    assert server.base_dir is not None
    base = server.base_dir
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    server.stop()
    assert not base.exists()
    server.stop()  # idempotent


class _OvertakeAfterGate:
    """A connection stand-in that lets another holder write right after the gate
    statement of a fenced read, before its read statement."""

    def __init__(self, conn: Any, overtake: Callable[[], object]) -> None:
        self._conn, self._overtake = conn, overtake

    def execute(self, sql: str, params: Any = None) -> Any:
        cursor = self._conn.execute(sql, params)
        if "INSERT INTO fc_resource" in sql and self._overtake is not None:
            row = cursor.fetchone()  # the raise has committed
            self._overtake()
            self._overtake = None  # type: ignore[assignment]
            return _Rows([row] if row is not None else [])
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _Rows:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None


@pytest.mark.postgres
def test_postgres_fenced_read_overtaken_before_its_read_is_refused(postgres_dsn: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Holder 5's fenced read raises the token to 5; holder 9 writes before 5's read
    statement runs: the read must not return 9's value as if 5 were still current."""
    store, other_store = PostgresStore(postgres_dsn), PostgresStore(postgres_dsn)
    resource, other = FencedResource(store), FencedResource(other_store)
    resource.write("orders", "k", b"from 1", token=1)
    borrow = store._connection

    @contextmanager
    def overtaken(**options: Any) -> Iterator[Any]:
        with borrow(**options) as conn:
            yield _OvertakeAfterGate(conn, lambda: other.write("orders", "k", b"from 9", token=9))

    monkeypatch.setattr(store, "_connection", overtaken)
    with pytest.raises(StaleTokenError, match="stale token 5 < 9"):
        resource.read("orders", "k", token=5)
    monkeypatch.undo()
    assert resource.read("orders", "k") == b"from 9"
    store.close()
    other_store.close()


@contextmanager
def black_hole() -> Iterator[int]:
    """A TCP port whose listener takes connections (the kernel completes the handshake)
    and never answers: a server that hangs."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.postgres
def test_postgres_connect_timeout_in_the_dsn_wins_over_the_default() -> None:
    """connect_timeout=2 in the DSN bounds the connect; the keyword's default (10 s) used
    to override it silently."""
    with black_hole() as port:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            PostgresStore(f"host=127.0.0.1 port={port} dbname=x connect_timeout=2")
        elapsed = time.monotonic() - started
    assert elapsed < 7, f"the connect took {elapsed:.1f} s"


@pytest.mark.postgres
def test_postgres_connect_timeout_given_twice_must_agree(postgres_dsn: str) -> None:
    with pytest.raises(ConfigurationError, match=r"connect_timeout is given twice, 3 s in the DSN and 5 s as keyword"):
        PostgresStore(make_conninfo(postgres_dsn, connect_timeout=3), connect_timeout=5)
    with pytest.raises(ConfigurationError, match="not a whole number of seconds"):
        PostgresStore(make_conninfo(postgres_dsn, connect_timeout="soon"))
    with pytest.raises(InvalidArgument, match="connect_timeout must be > 0"):
        PostgresStore(postgres_dsn, connect_timeout=0)
    with PostgresStore(make_conninfo(postgres_dsn, connect_timeout=3), connect_timeout=3) as same:
        assert same.connect_timeout == 3.0
    with PostgresStore(make_conninfo(postgres_dsn, connect_timeout=4)) as from_dsn:
        assert from_dsn.connect_timeout == 4.0
    with PostgresStore(postgres_dsn) as default:
        assert default.connect_timeout == 10.0
