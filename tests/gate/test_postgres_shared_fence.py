"""PostgresStore: writers of a token equal to the highest share the fence row; only a
raise of the token takes it exclusively (and still waits for every equal writer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from fencing_coord.gate import FencedResource, WriteResult
from fencing_coord.stores import PostgresStore

pytestmark = pytest.mark.postgres


def _in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def _wait_for_lock_waiter(dsn: str, seconds: float = 30.0) -> None:
    """Until some backend waits for a row lock on this database (awaited, not slept)."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                               " AND datname = current_database()").fetchone()
            if row is not None and row[0] > 0:
                return
            conn.execute("SELECT pg_sleep(0.02)")
    raise AssertionError("no writer ever waited for the fence row")


def test_equal_token_writers_do_not_wait_for_each_other(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn) as store, psycopg.connect(postgres_dsn) as other:
        resource = FencedResource(store)
        assert resource.write("doc", "a", b"1", token=7).accepted
        # Another writer of token 7 in the middle of its write: it holds the fence row
        # shared, as the shared path does until its statement commits.
        other.execute("SELECT highest_token FROM fc_resource WHERE name = 'doc' FOR SHARE")
        thread, out = _in_thread(lambda: resource.write("doc", "b", b"2", token=7))
        thread.join(20)
        finished = not thread.is_alive()
        other.rollback()
        thread.join(20)
        assert finished, "an equal-token write waited for another writer's share of the fence row"
        assert isinstance(out[0], WriteResult)
        assert out[0].accepted
        assert resource.read("doc", "b", token=7) == b"2"


def test_a_raise_waits_for_equal_writers_then_refuses_them(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn) as store, psycopg.connect(postgres_dsn) as other:
        resource = FencedResource(store)
        assert resource.write("doc", "a", b"1", token=7).accepted
        other.execute("SELECT highest_token FROM fc_resource WHERE name = 'doc' FOR SHARE")
        raiser, raised = _in_thread(lambda: resource.write("doc", "a", b"8", token=8))
        _wait_for_lock_waiter(postgres_dsn)
        assert raiser.is_alive()  # the raise waits for the equal writer in flight
        other.rollback()
        raiser.join(30)
        assert isinstance(raised[0], WriteResult)
        assert raised[0].accepted
        late = resource.write("doc", "a", b"stale", token=7)  # the hint says 7: tries the shared path, refused
        assert not late.accepted
        assert late.highest_token == 8
        assert resource.read("doc", "a") == b"8"


def test_strict_equal_token_is_refused_on_the_shared_path(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn) as store:
        assert FencedResource(store).write("doc", "a", b"1", token=7).accepted
        strict = FencedResource(store, strict=True)
        assert not strict.write("doc", "a", b"2", token=7).accepted
        resource = FencedResource(store)
        assert resource.read("doc", "a") == b"1"
