"""The counter scenario of :class:`~.gate_workers.CounterHarness` on a Pattern A row: a
``counters`` table of the user's own, one row per run, fenced by its ``fence`` column.

The worker's *documented* flow reads with ``fenced_select`` (the read raises the row's
fence) and commits, then writes with ``fenced_update``; the *naive* flow reads with a
plain ``SELECT``. Both commit before the checkpoint, as a careful user does, so that the
paused holder's late write is decided by the fence alone, not by a lock held open.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from fencing_coord.stores.fenced_sql import fenced_select, fenced_update

from .gate_workers import open_sql_connection

__all__ = ["COUNTERS_DDL", "RowCounterSpec", "row_counter_worker"]

COUNTERS_DDL = "CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL, fence BIGINT)"


@dataclass(frozen=True)
class RowCounterSpec:
    """The database holding ``counters``: ``kind`` is ``sqlite`` (``target`` a path) or
    ``postgres`` (``target`` a DSN)."""

    kind: str
    target: str

    @property
    def mark(self) -> str:
        return "?" if self.kind == "sqlite" else "%s"

    def create(self, resource: str) -> None:
        """The table (if missing) and the run's row, at 0 and never fenced."""
        conn = open_sql_connection(self.kind, self.target)
        try:
            conn.execute(COUNTERS_DDL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
            conn.execute(f"INSERT INTO counters (name, n) VALUES ({self.mark}, 0)", (resource,))
            conn.commit()
        finally:
            conn.close()

    def open(self) -> RowCounterView:
        return RowCounterView(self)


class RowCounterView:
    """The harness's view of the row: the counter as the store's ``plain_read`` would
    give it, and the row's fence as its highest token."""

    def __init__(self, spec: RowCounterSpec) -> None:
        self.spec = spec
        self.conn = open_sql_connection(spec.kind, spec.target)

    def _row(self, resource: str) -> tuple[Any, ...]:
        row: tuple[Any, ...] = self.conn.execute(
            f"SELECT n, fence FROM counters WHERE name = {self.spec.mark}", (resource,)).fetchone()
        self.conn.commit()  # no snapshot kept between readings
        return row

    def plain_read(self, resource: str, key: str) -> bytes | None:
        return str(self._row(resource)[0]).encode()

    def highest_token(self, resource: str) -> int | None:
        fence: int | None = self._row(resource)[1]
        return fence

    def __enter__(self) -> RowCounterView:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.conn.close()


def row_counter_worker(spec: RowCounterSpec, documented: bool, conn: Connection, resource: str,
                       increments: int) -> None:
    """Increment the row ``increments`` times under locks from the harness, reading with
    ``fenced_select`` (``documented``) or a plain ``SELECT``; a refused write is redone
    under a fresh grant."""
    try:
        db = open_sql_connection(spec.kind, spec.target)
        done = 0
        while done < increments:
            conn.send(("acquire",))
            _, token = conn.recv()
            if documented:
                read = fenced_select(db, "counters", {"name": resource}, ["n"], token=token)
                db.commit()
                if not read.accepted:
                    assert not read.missing
                    conn.send(("release", token, False))
                    conn.recv()
                    continue
                assert read.values is not None
                n = int(read.values["n"])
            else:
                n = int(db.execute(f"SELECT n FROM counters WHERE name = {spec.mark}", (resource,)).fetchone()[0])
                db.commit()
            conn.send(("checkpoint", token))
            conn.recv()  # a paused holder waits here, past its lease
            result = fenced_update(db, "counters", {"name": resource}, {"n": n + 1}, token=token)
            db.commit()
            conn.send(("release", token, result.accepted))
            conn.recv()
            done += result.accepted
        db.close()
        conn.send(("done",))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
