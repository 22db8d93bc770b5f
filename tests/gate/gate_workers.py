"""Multi-process harness for the gate's concurrency tests.

Workers run in real processes (the ``forkserver`` context: no threads inherited, fast
start). A store reaches them as a picklable :class:`StoreSpec`; the memory store is
hosted in a ``multiprocessing`` manager process, so many processes share one
:class:`MemoryStore` and its mutex is exercised by concurrent manager threads.

:class:`CounterHarness` is the lock service for the counter scenario: it lives in the
test process, grants ``memory://`` locks on a :class:`FakeClock` and decides, at each
worker's checkpoint between its read and its write, whether that holder is paused. A
paused holder's lease is expired by moving the clock past its TTL; its successor is
granted the lock, reads, and only then is the paused holder let go to write, and the
successor's write waits until the paused one's write is done. Every step is a message
on a pipe, so the interleaving is the same on every run.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import multiprocessing.context
import multiprocessing.managers
import multiprocessing.synchronize
import random
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any, Protocol

import fencing_coord.config as fc_config
from fencing_coord.errors import StaleTokenError
from fencing_coord.gate import FencedResource, UnfencedResource
from fencing_coord.interface import Grant, LockBackend
from fencing_coord.stores import MemoryStore, PostgresStore, SQLiteStore, Store
from fencing_coord.stores.base import FencedOutcome
from fencing_coord.testing import FakeClock

__all__ = ["CounterHarness", "CounterReport", "CounterSpec", "CounterView", "StoreSpec", "interleaved_writer",
           "mp_context"]


def mp_context() -> multiprocessing.context.ForkServerContext:
    """The context every test process is started from."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["fencing_coord.gate", "fencing_coord.stores.postgres", "psycopg", __name__])
    return ctx


class StoreManager(multiprocessing.managers.BaseManager):
    """Hosts one MemoryStore for many processes."""


StoreManager.register("MemoryStore", MemoryStore)


class ProxyStore(Store):
    """A :class:`Store` that forwards to a MemoryStore in a manager process."""

    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        outcome: FencedOutcome = self._proxy.fenced_write(resource, key, value, token, strict)
        return outcome

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        outcome: FencedOutcome = self._proxy.fenced_read(resource, key, token, strict)
        return outcome

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        self._proxy.plain_write(resource, key, value)

    def plain_read(self, resource: str, key: str) -> bytes | None:
        value: bytes | None = self._proxy.plain_read(resource, key)
        return value

    def highest_token(self, resource: str) -> int | None:
        token: int | None = self._proxy.highest_token(resource)
        return token


@dataclass(frozen=True)
class StoreSpec:
    """How to open one store, in this process or another: ``kind`` is ``memory``,
    ``sqlite``, ``postgres``, ``redis`` or ``s3``; ``target`` is a manager proxy (memory;
    None for a process-local MemoryStore), a file path (sqlite), a DSN (postgres), a URL
    (redis) or ``(endpoint, bucket, prefix)`` (s3)."""

    kind: str
    target: Any = None

    def open(self) -> Store:
        if self.kind == "s3":
            return open_s3_store(*self.target)
        if self.kind == "memory":
            return MemoryStore() if self.target is None else ProxyStore(self.target)
        if self.kind == "sqlite":
            return SQLiteStore(self.target)
        if self.kind == "postgres":
            return PostgresStore(self.target)
        if self.kind == "redis":
            from fencing_coord.stores import RedisStore  # imports redis-py only when used

            store: Store = RedisStore(self.target)
            return store
        raise ValueError(f"unknown store kind {self.kind!r}")


@functools.cache
def _s3_session() -> Any:
    """One boto3 session per process: it caches the service models a client loads."""
    from fencing_coord.servers.moto_s3 import MotoS3Server

    return MotoS3Server().session()


def open_s3_store(endpoint: str, bucket: str, prefix: str) -> Store:
    """An S3Store on the test session's moto server."""
    from fencing_coord.stores.s3 import S3Store

    return S3Store(bucket, prefix=prefix, endpoint_url=endpoint, session=_s3_session())


# -- interleaved writers --------------------------------------------------------------


def open_sqlite_together(path: str, start: multiprocessing.synchronize.Barrier) -> None:
    """Open (and so create or switch to WAL) ``path`` at the same moment as the others."""
    start.wait()
    SQLiteStore(path).close()


def writer_tokens(worker: int, workers: int, count: int) -> list[int]:
    """Worker ``worker``'s tokens: every ``workers``-th one, mostly ascending, with some
    neighbours swapped so that late, lower tokens arrive after higher ones."""
    tokens = [worker + 1 + i * workers for i in range(count)]
    rng = random.Random(worker)
    for i in range(0, count - 1, 2):
        if rng.random() < 0.5:
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    return tokens


def interleaved_writer(spec: StoreSpec, resource: str, tokens: Sequence[int],
                       start: multiprocessing.synchronize.Barrier, results: Any) -> None:
    """Write ``str(token)`` under each token, twice (a holder writing again under its
    grant); report ``(token, accepted, highest_before, repeat)`` per write, and whether
    ``highest_token`` ever went down between this worker's reads."""
    try:
        with spec.open() as store:
            gate = FencedResource(store)
            outcomes: list[tuple[int, bool, int | None, bool]] = []
            seen: list[int] = []
            start.wait()
            for token in tokens:
                for repeat in (False, True):
                    result = gate.write(resource, "k", str(token).encode(), token=token)
                    outcomes.append((token, result.accepted, result.highest_token, repeat))
                highest = gate.highest_token(resource)
                assert highest is not None
                seen.append(highest)
            monotonic = all(a <= b for a, b in itertools.pairwise(seen))
            results.put(("ok", outcomes, monotonic))
    except BaseException:
        results.put(("error", traceback.format_exc(), False))


def highest_watcher(spec: StoreSpec, resource: str, start: multiprocessing.synchronize.Barrier,
                    stop: multiprocessing.synchronize.Event, results: Any) -> None:
    """Read ``highest_token`` until ``stop``; report the readings' count and any decrease."""
    try:
        with spec.open() as store:
            gate = FencedResource(store)
            start.wait()
            last, readings, decreases = -1, 0, []
            while not stop.is_set():
                highest = gate.highest_token(resource)
                readings += 1
                if highest is not None:
                    if highest < last:
                        decreases.append((last, highest))
                    last = highest
            results.put(("ok", readings, decreases))
    except BaseException:
        results.put(("error", traceback.format_exc(), []))


# -- the counter under memory-backend locks -----------------------------------------


def counter_worker(spec: StoreSpec, fenced: bool, conn: Connection, resource: str, increments: int) -> None:
    """Increment ``resource``/``counter`` ``increments`` times, read-modify-write under a
    lock from the harness; a refused write is retried under a fresh grant."""
    try:
        with spec.open() as store:
            gate = FencedResource(store) if fenced else UnfencedResource(store)
            done = 0
            while done < increments:
                conn.send(("acquire",))
                _, token = conn.recv()
                try:
                    raw = gate.read(resource, "counter", token=token)
                except StaleTokenError:
                    conn.send(("release", token, False))
                    conn.recv()
                    continue
                conn.send(("checkpoint", token))
                conn.recv()  # a paused holder waits here, past its lease
                result = gate.write(resource, "counter", str(int(raw or b"0") + 1).encode(), token=token)
                conn.send(("release", token, result.accepted))
                conn.recv()
                done += result.accepted
            conn.send(("done",))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


class CounterView(Protocol):
    """What the harness reads of the counter between steps: a :class:`Store`, or the
    Pattern A table of :mod:`.row_counter`."""

    def plain_read(self, resource: str, key: str) -> bytes | None: ...

    def highest_token(self, resource: str) -> int | None: ...

    def __enter__(self) -> CounterView: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class CounterSpec(Protocol):
    """How the harness and its workers open the counter (``StoreSpec`` or ``RowCounterSpec``)."""

    def open(self) -> CounterView: ...


@dataclass
class CounterReport:
    """What one counter run did, as the harness saw it."""

    final: int
    accepted: int
    refused: int
    pauses: int
    grants: int
    paused_grants_lost: bool
    highest_seen: list[int] = field(default_factory=list)


class CounterHarness:
    """Runs ``workers`` counter workers against ``spec``; see the module docstring.

    The holder of every ``pause_every``-th grant is paused at its checkpoint (if some
    other worker still has increments to do, so a successor will come). ``worker`` is the
    process target, called ``worker(spec, fenced, pipe, resource, increments)``.
    """

    LOCK = "counter-lock"

    def __init__(self, ctx: multiprocessing.context.ForkServerContext, spec: CounterSpec, *, fenced: bool,
                 workers: int = 4, increments: int = 5, pause_every: int = 3, ttl: float = 10.0,
                 worker: Callable[[Any, bool, Connection, str, int], None] = counter_worker) -> None:
        self.ctx, self.spec, self.fenced, self.worker = ctx, spec, fenced, worker
        self.workers, self.increments, self.pause_every, self.ttl = workers, increments, pause_every, ttl
        self.resource = f"counter-{uuid.uuid4().hex[:8]}"
        self.clock = FakeClock()
        table = f"memory://gate-{uuid.uuid4().hex[:8]}"
        self.backends: list[LockBackend] = [
            fc_config.connect(table, clock=self.clock, ttl=ttl, identity=f"worker-{i}") for i in range(workers)
        ]
        self.conns: list[Connection] = []
        self.pending: deque[int] = deque()
        self.grants: dict[int, Grant] = {}
        self.accepted = [0] * workers
        self.refused = 0
        self.grant_count = 0
        self.pauses = 0
        self.paused: int | None = None
        self.paused_grants_lost: list[bool] = []
        self.successor: int | None = None
        self.finished: set[int] = set()
        self.highest_seen: list[int] = []

    def run(self) -> CounterReport:
        processes = []
        for _ in range(self.workers):
            parent, child = self.ctx.Pipe()
            self.conns.append(parent)
            args = (self.spec, self.fenced, child, self.resource, self.increments)
            processes.append(self.ctx.Process(target=self.worker, args=args))
        for process in processes:
            process.start()
        try:
            with self.spec.open() as store:
                self._serve(store)
                final = int(store.plain_read(self.resource, "counter") or b"0")
            for process in processes:
                process.join()
        finally:
            for process in processes:
                if process.is_alive():  # only after a failure: the others wait on their pipes
                    process.kill()
                    process.join()
            for backend in self.backends:
                backend.close()
        return CounterReport(final, sum(self.accepted), self.refused, self.pauses, self.grant_count,
                             all(self.paused_grants_lost), self.highest_seen)

    def _serve(self, store: CounterView) -> None:
        while len(self.finished) < self.workers:
            # A finished worker's pipe is closed; waiting on it would report EOF forever.
            for conn in wait([c for w, c in enumerate(self.conns) if w not in self.finished]):
                assert isinstance(conn, Connection)
                worker = self.conns.index(conn)
                try:
                    message = conn.recv()
                except EOFError:
                    raise AssertionError(f"worker {worker} died without a word") from None
                self._handle(worker, message, store)

    def _handle(self, worker: int, message: tuple[Any, ...], store: CounterView) -> None:
        kind = message[0]
        if kind == "error":
            raise AssertionError(f"worker {worker} failed:\n{message[1]}")
        if kind == "acquire":
            self.pending.append(worker)
            self._grant_next()
        elif kind == "checkpoint":
            self._checkpoint(worker)
        elif kind == "release":
            self._release(worker, accepted=message[2], store=store)
        elif kind == "done":
            self.finished.add(worker)

    def _grant_next(self) -> None:
        while self.pending:
            grant = self.backends[self.pending[0]].try_acquire(self.LOCK)
            if grant is None:
                return
            worker = self.pending.popleft()
            self.grants[worker] = grant
            self.grant_count += 1
            self.conns[worker].send(("granted", grant.token))

    def _checkpoint(self, worker: int) -> None:
        if self.paused is not None:
            # The successor has read: now the paused holder writes, and the successor's
            # own write waits until the paused one has reported back.
            self.conns[self.paused].send(("go",))
            self.successor = worker
            return
        others_unfinished = any(self.accepted[w] < self.increments for w in range(self.workers) if w != worker)
        if self.grant_count % self.pause_every == 0 and others_unfinished:
            self.paused = worker
            self.pauses += 1
            self.clock.advance(self.ttl)  # the lease ends at exactly grant + ttl
            self.paused_grants_lost.append(self.grants[worker].lost)
            self._grant_next()
            return
        self.conns[worker].send(("go",))

    def _release(self, worker: int, *, accepted: bool, store: CounterView) -> None:
        self.backends[worker].release(self.grants.pop(worker))
        self.accepted[worker] += accepted
        self.refused += not accepted
        highest = store.highest_token(self.resource)
        if highest is not None:
            self.highest_seen.append(highest)
        self.conns[worker].send(("ok",))
        if worker == self.paused:
            self.paused = None
            if self.successor is not None:
                self.conns[self.successor].send(("go",))
                self.successor = None
        self._grant_next()


# -- Pattern A: fenced rows of a user's table ----------------------------------------


def open_sql_connection(kind: str, target: str) -> Any:
    """A user's own connection: sqlite3 on a file, or psycopg (not autocommit)."""
    if kind == "sqlite":
        import sqlite3

        return sqlite3.connect(target, timeout=60)
    import psycopg

    return psycopg.connect(target)


def pattern_a_writer(kind: str, target: str, tokens: Sequence[int],
                     start: multiprocessing.synchronize.Barrier, results: Any) -> None:
    """``fenced_update`` one row under each token, committing each; report outcomes."""
    from fencing_coord.stores.fenced_sql import fenced_update

    try:
        conn = open_sql_connection(kind, target)
        try:
            outcomes = []
            start.wait()
            for token in tokens:
                result = fenced_update(conn, "positions", {"account_id": 1}, {"qty": token}, token=token)
                conn.commit()
                outcomes.append((token, result.accepted, result.fence))
            results.put(("ok", outcomes, True))
        finally:
            conn.close()
    except BaseException:
        results.put(("error", traceback.format_exc(), False))
