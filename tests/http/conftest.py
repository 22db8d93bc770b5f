"""Fixtures for the HTTP tests: the test application served by real uvicorn processes,
one per gate for the session, and a PostgreSQL server for the PostgreSQL admission."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from fencing_coord.servers.postgres import FAST_SETTINGS, PostgresServer

from .servers import Uvicorn

GATES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "store"]


@dataclass(frozen=True)
class Served:
    """A running test application: its URL, its gate's kind and FC_GATE spec."""

    url: str
    kind: str
    spec: str


@pytest.fixture(scope="session")
def http_pg_dsn() -> Iterator[str]:
    """A PostgreSQL database (its own schema) for the session's PostgreSQL admission."""
    with PostgresServer(settings=FAST_SETTINGS) as server:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        yield make_conninfo(server.dsn, options=f"-csearch_path={schema}")


def gate_spec(kind: str, directory: Path, request: pytest.FixtureRequest) -> str:
    if kind == "postgres":
        return f"postgres:{request.getfixturevalue('http_pg_dsn')}"
    return f"{kind}:{directory / f'{kind}.db'}"


@pytest.fixture(scope="session", params=GATES)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The application behind FencingMiddleware, once per gate."""
    kind: str = request.param
    spec = gate_spec(kind, tmp_path_factory.mktemp(f"http-{kind}"), request)
    with Uvicorn(spec) as server:
        yield Served(server.url, kind, spec)


@pytest.fixture
def resource() -> str:
    """A resource name no other test uses."""
    return f"r-{uuid.uuid4().hex[:12]}"
