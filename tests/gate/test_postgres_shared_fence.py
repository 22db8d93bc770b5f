"""PostgresStore: writers of a token equal to the highest hold the resource's advisory
lock shared and take no lock on its fence row; every raise of the token, by any client,
takes the advisory lock exclusively (a trigger on ``fc_resource``), so it waits for the
equal writers in flight, and the equal writers after it are refused."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fencing_coord.errors import BackendUnavailable, ConfigurationError
from fencing_coord.gate import FencedResource, WriteResult
from fencing_coord.stores import PostgresStore, postgres_shared_fence

pytestmark = pytest.mark.postgres


def _in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


#: The advisory lock key of resource 'doc' in the fc_resource of the search_path.
_KEY = "('fc_resource'::regclass::oid::bigint << 32) | (hashtext('doc')::bigint & 4294967295)"
#: What an equal writer in flight holds: the resource's advisory lock, shared.
_HOLD_SHARED = f"SELECT pg_advisory_xact_lock_shared({_KEY})"


def _wait_for_lock_waiter(dsn: str, seconds: float = 30.0) -> None:
    """Until some backend waits for a heavyweight lock on this database (polled, not slept)."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                               " AND datname = current_database()").fetchone()
            if row is not None and row[0] > 0:
                return
            conn.execute("SELECT pg_sleep(0.02)")
    raise AssertionError("no writer ever waited for a lock")


def test_equal_token_writers_do_not_wait_for_each_other(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn) as store, psycopg.connect(postgres_dsn) as other:
        resource = FencedResource(store)
        assert resource.write("doc", "a", b"1", token=7).accepted
        # Another writer of token 7 in the middle of its write: it holds the resource's
        # advisory lock shared, as the shared path does until its statement commits.
        other.execute(_HOLD_SHARED)
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
        other.execute(_HOLD_SHARED)
        raiser, raised = _in_thread(lambda: resource.write("doc", "a", b"8", token=8))
        _wait_for_lock_waiter(postgres_dsn)
        assert raiser.is_alive()  # the raise waits for the equal writer in flight
        other.rollback()
        raiser.join(30)
        assert isinstance(raised[0], WriteResult)
        assert raised[0].accepted
        late = resource.write("doc", "a", b"stale", token=7)
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


def test_an_equal_write_takes_no_lock_on_the_fence_row(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn) as store, psycopg.connect(postgres_dsn) as blocker, \
            psycopg.connect(postgres_dsn) as probe:
        resource = FencedResource(store)
        assert resource.write("doc", "a", b"1", token=7).accepted
        assert resource.write("doc", "b", b"1", token=7).accepted
        # Hold the value row of "b", so that an equal write of "b" stops in the middle.
        blocker.execute("SELECT FROM fc_value WHERE resource = 'doc' AND key = 'b' FOR UPDATE")
        writer, written = _in_thread(lambda: resource.write("doc", "b", b"2", token=7))
        _wait_for_lock_waiter(postgres_dsn)
        # FOR SHARE on the fence row (the previous shared path) made this fail at once.
        probe.execute("SELECT FROM fc_resource WHERE name = 'doc' FOR UPDATE NOWAIT")
        held = probe.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock'"
                             " AND classid = 'fc_resource'::regclass::oid AND granted").fetchone()
        probe.rollback()
        blocker.rollback()
        writer.join(30)
        assert held == (1,), "the equal writer did not hold the resource's advisory lock shared"
        assert isinstance(written[0], WriteResult)
        assert written[0].accepted
        assert resource.read("doc", "b", token=7) == b"2"


def test_a_raise_by_any_client_waits_for_equal_writers(postgres_dsn: str) -> None:
    """The exclusive lock is the trigger's, not the store's: a raise by an older version
    of this package, or by hand, waits too; an update that does not raise does not."""
    with PostgresStore(postgres_dsn) as store, psycopg.connect(postgres_dsn) as other, \
            psycopg.connect(postgres_dsn, autocommit=True) as raw:
        assert FencedResource(store).write("doc", "a", b"1", token=7).accepted
        other.execute(_HOLD_SHARED)
        raw.execute("SET lock_timeout = '10s'")  # a wait below fails the test rather than hanging it
        raw.execute("UPDATE fc_resource SET previous_token = highest_token WHERE name = 'doc'")
        raiser, _ = _in_thread(lambda: raw.execute("UPDATE fc_resource SET highest_token = 9 WHERE name = 'doc'"))
        _wait_for_lock_waiter(postgres_dsn)
        assert raiser.is_alive()
        other.rollback()
        raiser.join(30)
        assert not raiser.is_alive()
        assert store.highest_token("doc") == 9


def test_an_equal_writer_behind_a_raise_in_flight_sees_it_and_is_refused(postgres_dsn: str) -> None:
    """The check runs after the shared lock is granted, in a snapshot taken then: a check
    in a snapshot from before the wait would admit a token the raise just made stale."""
    with PostgresStore(postgres_dsn) as store, psycopg.connect(postgres_dsn) as raiser:
        resource = FencedResource(store)
        assert resource.write("doc", "a", b"1", token=7).accepted
        raiser.execute("UPDATE fc_resource SET highest_token = 8 WHERE name = 'doc'")  # holds the lock
        writer, written = _in_thread(lambda: resource.write("doc", "a", b"stale", token=7))
        _wait_for_lock_waiter(postgres_dsn)
        assert writer.is_alive()
        raiser.execute("INSERT INTO fc_value VALUES ('doc', 'a', 'by 8') ON CONFLICT (resource, key)"
                       " DO UPDATE SET value = EXCLUDED.value")
        raiser.commit()
        writer.join(30)
        assert isinstance(written[0], WriteResult)
        assert not written[0].accepted
        assert written[0].highest_token == 8
        assert resource.read("doc", "a") == b"by 8"


def test_a_schema_from_an_earlier_version_gets_the_trigger(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE fc_resource (name text PRIMARY KEY, highest_token bigint NOT NULL,"
                     " previous_token bigint)")
        conn.execute("CREATE TABLE fc_value (resource text NOT NULL, key text NOT NULL, value bytea NOT NULL,"
                     " PRIMARY KEY (resource, key))")
        conn.execute("INSERT INTO fc_resource VALUES ('doc', 7, NULL)")
        with PostgresStore(postgres_dsn), PostgresStore(postgres_dsn):  # the second finds them made
            triggers = conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'fc_resource'::regclass"
                                    " AND NOT tgisinternal").fetchall()
        assert triggers == [("fc_raise_waits_v1",)]


def _schema_of(dsn: str) -> str:
    """The schema that the fixture's DSN puts first (``options=-csearch_path=...``)."""
    return str(conninfo_to_dict(dsn)["options"]).split("=", 1)[1]


def _old_schema(conn: psycopg.Connection[object]) -> None:
    """The tables as releases before the shared fence made them (no functions, no trigger)."""
    conn.execute("CREATE TABLE fc_resource (name text PRIMARY KEY, highest_token bigint NOT NULL,"
                 " previous_token bigint)")
    conn.execute("CREATE TABLE fc_value (resource text NOT NULL, key text NOT NULL, value bytea NOT NULL,"
                 " PRIMARY KEY (resource, key))")


def test_functions_of_the_same_names_later_in_the_search_path_are_not_used(
        postgres_dsn: str, postgres_server_dsn: str) -> None:
    """Ours are made and called in fc_resource's schema: a function of the same name in
    another schema of the search_path (``public`` is writable by all before PostgreSQL
    15) neither stops them being created nor is called instead."""
    own = _schema_of(postgres_dsn)
    rogue = f"rogue_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {rogue}")
        conn.execute(f"CREATE FUNCTION {rogue}.fc_share_fence_v1(text, bigint) RETURNS boolean"
                     " LANGUAGE sql AS 'SELECT true'")
        conn.execute(f"CREATE FUNCTION {rogue}.fc_raise_waits_v1() RETURNS trigger LANGUAGE plpgsql"
                     " AS 'BEGIN RETURN NEW; END'")
    both = make_conninfo(postgres_server_dsn, options=f"-csearch_path={own},{rogue}")
    with PostgresStore(both) as store, psycopg.connect(both, autocommit=True) as conn:
        resource = FencedResource(store)
        assert resource.write("doc", "a", b"1", token=7).accepted
        conn.execute("UPDATE fc_resource SET highest_token = 9 WHERE name = 'doc'")  # a raise elsewhere
        assert not resource.write("doc", "a", b"stale", token=7).accepted  # the hint says 7: the shared path
        assert resource.read("doc", "a") == b"1"
        made = conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = %s::regnamespace"
                            " AND proname IN ('fc_share_fence_v1', 'fc_raise_waits_v1')", (own,)).fetchone()
        assert made == (2,)


def test_the_same_resource_name_in_two_schemas_has_two_locks(postgres_dsn: str, postgres_server_dsn: str) -> None:
    other_schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {other_schema}")
    elsewhere = make_conninfo(postgres_server_dsn, options=f"-csearch_path={other_schema}")
    with PostgresStore(postgres_dsn) as here, PostgresStore(elsewhere) as there, \
            psycopg.connect(postgres_dsn) as blocker:
        assert FencedResource(here).write("doc", "a", b"1", token=7).accepted
        assert FencedResource(there).write("doc", "a", b"1", token=7).accepted
        # An equal write of here's 'doc' in flight: it holds its advisory lock shared.
        blocker.execute("SELECT FROM fc_value WHERE resource = 'doc' AND key = 'a' FOR UPDATE")
        writer, _ = _in_thread(lambda: FencedResource(here).write("doc", "a", b"2", token=7))
        _wait_for_lock_waiter(postgres_dsn)
        raiser, raised = _in_thread(lambda: FencedResource(there).write("doc", "a", b"8", token=8))
        raiser.join(20)
        finished = not raiser.is_alive()
        blocker.rollback()
        writer.join(20)
        raiser.join(20)
        assert finished, "a raise in one schema waited for an equal writer of another"
        assert isinstance(raised[0], WriteResult)
        assert raised[0].accepted


def test_a_disabled_trigger_is_refused_at_start(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn), psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE fc_resource DISABLE TRIGGER fc_raise_waits_v1")
    with pytest.raises(ConfigurationError, match="disabled or calls another function"):
        PostgresStore(postgres_dsn)


def test_installing_the_trigger_waits_a_bounded_time_for_open_transactions(
        postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_shared_fence, "INSTALL_LOCK_TIMEOUT", "300ms")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        _old_schema(conn)
        conn.execute("INSERT INTO fc_resource VALUES ('doc', 7, NULL)")
    with psycopg.connect(postgres_dsn) as open_transaction:  # as an older release's admission in flight
        open_transaction.execute("UPDATE fc_resource SET previous_token = 7 WHERE name = 'doc'")
        began = time.monotonic()
        with pytest.raises(BackendUnavailable, match="retry"):
            PostgresStore(postgres_dsn)
        assert time.monotonic() - began < 20
        open_transaction.rollback()
    with PostgresStore(postgres_dsn) as store:  # the transaction ended: it installs
        assert not FencedResource(store).write("doc", "a", b"x", token=6).accepted


def test_a_role_that_does_not_own_the_table_needs_the_owner_to_start_once(
        postgres_dsn: str, postgres_server_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
        if not (row and row[0]):
            pytest.skip("the test server's user may not create roles")
        schema = _schema_of(postgres_dsn)
        role = f"app_{uuid.uuid4().hex[:8]}"
        _old_schema(conn)
        conn.execute(f"CREATE ROLE {role} LOGIN")
        try:
            conn.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}")
            conn.execute(f"GRANT SELECT, INSERT, UPDATE ON fc_resource, fc_value TO {role}")
            as_app = make_conninfo(postgres_dsn, user=role)
            with pytest.raises(ConfigurationError, match="as the owner of fc_resource"):
                PostgresStore(as_app)
            PostgresStore(postgres_dsn).close()  # the owner, once
            with PostgresStore(as_app) as store:
                resource = FencedResource(store)
                assert resource.write("doc", "a", b"1", token=7).accepted
                assert resource.write("doc", "a", b"2", token=7).accepted  # the shared path, as the app
        finally:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
