"""Fixtures for the gate's tests: one real PostgreSQL server, one real Redis server and
one moto S3 server (a separate process) per session, real SQLite files per test, and a
``store`` fixture that runs a test once per store.

The PostgreSQL server is started from the local binaries (see
:mod:`fencing_coord.servers.postgres`) with durability off; set
``FENCING_COORD_PG_DSN`` to use an existing server instead. Each test gets its own
PostgreSQL schema, and its own Redis namespace, so tests never see each other's rows.
The Redis server (Debian's ``redis-server``) runs with AOF and ``appendfsync always``, its
data on a tmpfs when there is one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from fencing_coord.servers.moto_s3 import MotoS3Server
from fencing_coord.servers.postgres import FAST_SETTINGS, PostgresServer
from fencing_coord.servers.redis import INSTALL_HINT as REDIS_INSTALL_HINT
from fencing_coord.servers.redis import RedisServer
from fencing_coord.stores import Store

from .gate_workers import StoreManager, StoreSpec, mp_context

STORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
          pytest.param("redis", marks=pytest.mark.redis),
          pytest.param("s3", marks=pytest.mark.s3)]

S3_BUCKET = "fc-test"


@pytest.fixture(scope="session")
def postgres_server_dsn() -> Iterator[str]:
    """DSN of a PostgreSQL server for the whole session (started here unless given)."""
    given = os.environ.get("FENCING_COORD_PG_DSN")
    if given:
        yield given
        return
    with PostgresServer(settings=FAST_SETTINGS) as server:
        yield server.dsn


@pytest.fixture
def postgres_dsn(postgres_server_dsn: str) -> str:
    """A DSN whose ``search_path`` is a fresh schema of this test's own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return make_conninfo(postgres_server_dsn, options=f"-csearch_path={schema}")


@pytest.fixture(scope="session")
def redis_store_server() -> Iterator[RedisServer]:
    """A Redis server with AOF (fsync always) for the whole session."""
    if shutil.which("redis-server") is None:
        pytest.skip(f"redis-server is not on PATH; install it: {REDIS_INSTALL_HINT}")
    with RedisServer(temp_root="/dev/shm" if Path("/dev/shm").is_dir() else None) as server:
        yield server


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3Server]:
    """moto's S3 server, a separate process, with bucket ``S3_BUCKET``, for the session."""
    with MotoS3Server() as server:
        server.create_bucket(S3_BUCKET)
        yield server


@pytest.fixture
def redis_url(redis_store_server: RedisServer) -> str:
    """The session's Redis server, in a namespace of this test's own."""
    return f"{redis_store_server.url}?namespace=t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_target(moto_s3: MotoS3Server) -> tuple[str, str, str]:
    """``(endpoint, bucket, prefix)`` with a prefix of this test's own."""
    return moto_s3.endpoint, S3_BUCKET, f"t-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    return str(tmp_path / "gate.db")


@pytest.fixture(params=STORES)
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """A spec for each store; memory is process-local (see ``shared_store_spec``)."""
    kind: str = request.param
    if kind == "sqlite":
        return StoreSpec(kind, str(tmp_path / "gate.db"))
    if kind == "postgres":
        return StoreSpec(kind, request.getfixturevalue("postgres_dsn"))
    if kind == "redis":
        return StoreSpec(kind, request.getfixturevalue("redis_url"))
    if kind == "s3":
        return StoreSpec(kind, request.getfixturevalue("s3_target"))
    return StoreSpec(kind)


@pytest.fixture
def store(store_spec: StoreSpec) -> Iterator[Store]:
    """Each store in turn, empty."""
    with store_spec.open() as opened:
        yield opened


@pytest.fixture
def shared_store_spec(store_spec: StoreSpec) -> Iterator[StoreSpec]:
    """Like ``store_spec``, but a memory store lives in a manager process so that worker
    processes share it."""
    if store_spec.kind != "memory":
        yield store_spec
        return
    manager = StoreManager(ctx=mp_context())
    manager.start()
    try:
        yield StoreSpec("memory", manager.MemoryStore())  # type: ignore[attr-defined]
    finally:
        manager.shutdown()
