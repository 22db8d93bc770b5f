"""The shared fence of :class:`~fencing_coord.stores.PostgresStore`: writers of a token
equal to the highest run at once; a raise of the token waits for them.

A holder writing again under its grant does not need the resource's fence row, and
takes no lock on it: it holds the resource's *advisory* lock shared, and every raise of
the token takes that lock exclusively. Three objects, created in the schema of
``fc_resource`` when absent, do it:

* ``fc_share_fence_v1(resource, token)``: takes the shared lock (held until the calling
  transaction ends), then, in a new snapshot taken once the lock is granted (the
  function is VOLATILE, so each of its queries takes one), tells whether ``token`` is
  the resource's highest. An equal write is one ``INSERT`` of the value whose ``WHERE``
  calls it (:func:`equal_write_statement`).
* the trigger ``fc_raise_waits_v1`` on ``fc_resource``, with its function of the same
  name: on every ``UPDATE`` that raises ``highest_token`` it takes the exclusive lock.
  So a raise made through this package (any version of it: the ``SELECT ... FOR SHARE``
  of earlier releases blocks a raise too), the HTTP admission or a hand-written
  ``UPDATE`` waits for the equal writes in flight, and the equal writes after it see
  the raise and are refused. Raises that fire no trigger are not covered: with the
  trigger disabled, with ``session_replication_role = replica``, or a row deleted and
  inserted again (which resets the fence anyway).

Nothing writes a row lock or a MultiXact on the fence row (``FOR SHARE`` did, which
cost the client a result row, the server a MultiXact per writer joining, and vacuum
their freezing). The lock's key is a bigint: the table's OID in the high 32 bits, the
name's ``hashtext`` in the low ones, so resources of different schemas never share one;
resources of one table whose names share a hash wait for each other's raises only.

A statement raising many rows takes one lock per row (at 20,000 rows it can exceed the
default ``max_locks_per_transaction``). Creating the trigger needs the owner of
``fc_resource`` and a moment with no transaction open on it (it waits at most
:data:`INSTALL_LOCK_TIMEOUT`); once the objects exist, any role that may write the
tables uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable, ConfigurationError

if TYPE_CHECKING:
    import psycopg

__all__ = ["INSTALL_LOCK_TIMEOUT", "equal_write_statement", "install"]

#: How long creating the trigger may wait for the transactions open on ``fc_resource``
#: (every write of the table queues behind the waiting DDL meanwhile).
INSTALL_LOCK_TIMEOUT = "5s"

# What exists: fc_resource's schema, our two functions in it (NULL when absent) and the
# trigger's function and state (NULL when absent).
_FOUND = """
    SELECT n.nspname,
           to_regprocedure(quote_ident(n.nspname) || '.fc_share_fence_v1(text, bigint)')::oid,
           to_regprocedure(quote_ident(n.nspname) || '.fc_raise_waits_v1()')::oid,
           t.tgfoid, t.tgenabled
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = 'fc_raise_waits_v1'
    WHERE c.oid = 'fc_resource'::regclass
"""

# The key: (OID of fc_resource << 32) | hashtext(name) as 32 unsigned bits.
_RAISE_FUNCTION = """
    CREATE FUNCTION {schema}.fc_raise_waits_v1() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        PERFORM pg_catalog.pg_advisory_xact_lock(
            (TG_RELID::bigint << 32) | (pg_catalog.hashtext(NEW.name)::bigint & 4294967295));
        RETURN NEW;
    END $f$
"""
_SHARE_FUNCTION = """
    CREATE FUNCTION {schema}.fc_share_fence_v1(p_resource text, p_token bigint)
        RETURNS boolean LANGUAGE plpgsql VOLATILE AS $f$
    BEGIN
        -- An IF rather than PERFORM: PL/pgSQL evaluates a simple expression without
        -- starting the executor (about 4 us less server CPU per write, measured here).
        IF pg_catalog.pg_advisory_xact_lock_shared(({table_literal}::regclass::oid::bigint << 32)
                | (pg_catalog.hashtext(p_resource)::bigint & 4294967295)) IS NULL THEN
        END IF;
        PERFORM FROM {table} WHERE name = p_resource AND highest_token = p_token;
        RETURN FOUND;
    END $f$
"""
_TRIGGER = """
    CREATE TRIGGER fc_raise_waits_v1 BEFORE UPDATE ON {table} FOR EACH ROW
        WHEN (NEW.highest_token > OLD.highest_token) EXECUTE FUNCTION {schema}.fc_raise_waits_v1()
"""

# One row written when the token is the highest, none when not. It reports by its row
# count, not a returned row: a result costs the client more than the rest of the call.
_EQUAL_WRITE = """
    INSERT INTO fc_value (resource, key, value) SELECT %s, %s, %s WHERE {schema}.fc_share_fence_v1(%s, %s::bigint)
    ON CONFLICT (resource, key) DO UPDATE SET value = EXCLUDED.value
"""


def install(conn: psycopg.Connection[Any], what: str) -> str:
    """Create the shared fence's objects where absent, in the transaction open on
    ``conn`` (after ``fc_resource`` exists); return the schema they are in.

    Raises :class:`ConfigurationError` when the trigger is there but disabled or bound
    to another function, or when this role may not create what is missing (the owner
    of ``fc_resource`` must start a store once); :class:`BackendUnavailable` when
    creating the trigger waited :data:`INSTALL_LOCK_TIMEOUT` for transactions on the
    table (retry)."""
    from psycopg import errors, sql

    found = conn.execute(_FOUND).fetchone()
    assert found is not None  # fc_resource exists: the caller just made sure
    schema_name, share, raiser, trigger_function, enabled = found
    schema, table = sql.Identifier(schema_name), sql.Identifier(schema_name, "fc_resource")
    names = {"schema": schema, "table": table, "table_literal": sql.Literal(table.as_string(conn))}
    try:
        if share is None:
            conn.execute(sql.SQL(_SHARE_FUNCTION).format(**names))
        if raiser is None:
            conn.execute(sql.SQL(_RAISE_FUNCTION).format(**names))
            now = conn.execute(_FOUND).fetchone()
            assert now is not None
            raiser = now[2]
        if trigger_function is None:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (INSTALL_LOCK_TIMEOUT,))
            conn.execute(sql.SQL(_TRIGGER).format(**names))
            trigger_function, enabled = raiser, "O"
    except errors.InsufficientPrivilege as exc:
        raise ConfigurationError(
            f"{what}: the shared fence's functions or trigger on {schema_name}.fc_resource are missing and this"
            f" role may not create them ({exc.diag.message_primary}); start a PostgresStore once as the owner"
            " of fc_resource") from exc
    except errors.LockNotAvailable as exc:
        raise BackendUnavailable(
            f"{what}: creating the trigger fc_raise_waits_v1 waited {INSTALL_LOCK_TIMEOUT} for the transactions"
            " open on fc_resource; retry") from exc
    if trigger_function != raiser or enabled not in ("O", "A"):
        raise ConfigurationError(
            f"{what}: the trigger fc_raise_waits_v1 on {schema_name}.fc_resource is disabled or calls another"
            " function; without it a raise of the token would not wait for the writers of the token before"
            " (enable it, or drop it and start a store as the owner of fc_resource)")
    return str(schema_name)


def equal_write_statement(schema_name: str) -> str:
    """The equal write's statement, for the functions in schema ``schema_name``:
    parameters (resource, key, value, resource, token); one row written when ``token``
    is the resource's highest, none when not."""
    quoted = '"' + schema_name.replace('"', '""') + '"'
    return _EQUAL_WRITE.replace("{schema}", quoted.replace("%", "%%"))  # % would read as a placeholder
