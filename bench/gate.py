"""What fencing costs: fenced write vs a plain upsert, fenced read vs a plain read, on
SQLite, PostgreSQL and S3; and an HTTP request through the fencing middleware vs the same
request to the same application without it.

    python bench/gate.py                      # SQLite in a temp dir + a throwaway PostgreSQL
    python bench/gate.py --dsn postgresql://… # use an existing PostgreSQL instead
    python bench/gate.py --ops 5000 --rounds 7
    python bench/gate.py --only s3,http       # some of sqlite, postgres, s3, http

S3 runs against moto's S3 server in a child process (the tests' stand-in for S3; its
absolute times are moto's, the ratio is what counts), with ``--s3-ops`` operations per
side. HTTP runs two uvicorn processes of ``bench/_http_app.py`` (one with
FencingMiddleware in front, one without) and sends them the same POST, alternately,
from one keep-alive httpx client: ``--http-ops`` requests per side and gate.

Both sides go through the same API and argument checks, on the same store and table:
``FencedResource.write`` (one atomic check-and-upsert) against ``UnfencedResource.write``
(the bare upsert), ``read(token=t)`` against ``read()``. The fenced side uses one token
throughout, as a lock holder does while it holds its grant; the lines marked "new token
each op" show the first operation of every grant (the token is raised each time).
Batches of fenced and plain operations alternate; the ratio printed is the median of
the ratios of neighbouring batches, so drift (other processes, autovacuum, the disk)
hits both sides alike.

The row "write, metrics + audit log" compares two fenced writers instead: one with
metrics (prometheus_client, through :class:`~fencing_coord.metrics.prometheus.PrometheusSink`)
and the audit log enabled (the ``fencing_coord.audit`` logger at INFO, every record
formatted with its fields and written by a ``logging.FileHandler``, to ``/dev/null``
unless ``--audit-log FILE`` names a file) against one with neither; its target is
1.10x. The audit logger is switched on only around the observed side's batches.
``--observed-only`` runs just that row. A log file on the database's disk adds that
disk's cost to each write: on ext4 (data=ordered) each commit's fsync also flushes the
log lines written since the last one.

The stores run with their durable defaults: SQLite ``synchronous=FULL`` in WAL mode and
PostgreSQL with ``fsync=on``, ``synchronous_commit=on``, so each write waits for a flush
on both sides. ``--fast`` turns durability off (SQLite ``synchronous=NORMAL``,
PostgreSQL ``fsync=off``, ``synchronous_commit=off``) to show the CPU and round-trip
cost alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import _common  # bench/_common.py: this script's directory is on sys.path
from prometheus_client import CollectorRegistry

from fencing_coord.gate import FencedResource, UnfencedResource
from fencing_coord.metrics.prometheus import PrometheusSink
from fencing_coord.observability import Metrics
from fencing_coord.servers.postgres import FAST_SETTINGS, PostgresServer
from fencing_coord.stores import PostgresStore, SQLiteStore, Store

# The observed side's audit trail: what an operator would log, one line per decision.
AUDIT_FORMAT = ("%(asctime)s %(levelname)s %(operation)s resource=%(resource)s key=%(key)s token=%(token)s"
                " highest=%(highest)s decision=%(decision)s mode=%(mode)s holder=%(holder)s")

# Every write stores a different 100-byte value, on both sides, so that no store can
# skip a write as a no-op (SQLite does skip rewriting identical rows).
VALUES = [bytes((i + j) % 256 for j in range(100)) for i in range(64)]
TOKEN = 1_000


def per_op(op: Callable[[int], object], ops: int) -> float:
    """Seconds per call of ``op(i)`` over ``ops`` calls."""
    start = time.perf_counter()
    for i in range(ops):
        op(i)
    return (time.perf_counter() - start) / ops


def compare(fenced: Callable[[int], object], plain: Callable[[int], object], ops: int,
            rounds: int) -> tuple[float, float, float]:
    """Median seconds per op of each side and median ratio of paired batches.

    Batches alternate (and alternate which side goes first), and each ratio compares two
    neighbouring batches, so load from other processes and disk hiccups hit both sides.
    """
    batch = max(1, ops // rounds)
    per_op(fenced, batch)  # warm up: prepared statements, caches
    per_op(plain, batch)
    times = _common.interleaved({"fenced": lambda: per_op(fenced, batch), "plain": lambda: per_op(plain, batch)},
                                rounds)
    return (statistics.median(times["fenced"]), statistics.median(times["plain"]),
            _common.paired_ratio(times["fenced"], times["plain"]))


def bench_store(label: str, store: Store, ops: int, rounds: int, audit_log: str, observed_only: bool) -> None:
    fenced, plain = FencedResource(store), UnfencedResource(store)
    fenced.write("bench-fenced", "k", VALUES[0], token=TOKEN).raise_for_status()
    plain.write("bench-plain", "k", VALUES[0], token=TOKEN)
    tokens = iter(range(TOKEN + 1, 2**62))

    def plain_write(i: int) -> object:
        return plain.write("bench-plain", "k", VALUES[i % 64], token=TOKEN)

    def plain_read(i: int) -> object:
        return plain.read("bench-plain", "k")

    measurements = {
        "write": (lambda i: fenced.write("bench-fenced", "k", VALUES[i % 64], token=TOKEN), plain_write),
        "read": (lambda i: fenced.read("bench-fenced", "k", token=TOKEN), plain_read),
        "write, new token each op": (
            lambda i: fenced.write("bench-fenced", "k", VALUES[i % 64], token=next(tokens)), plain_write),
        "read, new token each op": (lambda i: fenced.read("bench-fenced", "k", token=next(tokens)), plain_read),
    }
    for what, (fenced_op, plain_op) in measurements.items():
        if observed_only:
            break
        fenced_s, plain_s, ratio = compare(fenced_op, plain_op, ops, rounds)
        print(f"{label:<11} {what:<25} fenced {fenced_s * 1e6:8.1f} us   plain {plain_s * 1e6:8.1f} us"
              f"   ratio {ratio:5.2f}x", flush=True)
    observed_s, bare_s, ratio = compare_observed(store, ops, rounds, audit_log)
    print(f"{label:<11} {'write, metrics + audit log':<25} with {observed_s * 1e6:10.1f} us   without"
          f" {bare_s * 1e6:6.1f} us   ratio {ratio:5.2f}x (+{(observed_s - bare_s) * 1e6:.1f} us)", flush=True)


def compare_observed(store: Store, ops: int, rounds: int, audit_log_path: str) -> tuple[float, float, float]:
    """A fenced write with metrics and the audit log on, against one with neither (same
    store, same kind of write): median seconds per op of each, median paired ratio."""
    audit_log = logging.getLogger("fencing_coord.audit")
    sink = PrometheusSink(CollectorRegistry())
    observed = FencedResource(store, metrics=Metrics(sink))
    bare = FencedResource(store)
    observed.write("bench-observed", "k", VALUES[0], token=TOKEN).raise_for_status()
    bare.write("bench-bare", "k", VALUES[0], token=TOKEN).raise_for_status()
    batch = max(1, ops // rounds)
    handler = logging.FileHandler(audit_log_path)
    handler.setFormatter(logging.Formatter(AUDIT_FORMAT))
    audit_log.addHandler(handler)
    audit_log.propagate = False

    def observed_batch() -> float:
        audit_log.setLevel(logging.INFO)
        try:
            return per_op(lambda i: observed.write("bench-observed", "k", VALUES[i % 64], token=TOKEN,
                                                   holder="bench"), batch)
        finally:
            audit_log.setLevel(logging.WARNING)

    def bare_batch() -> float:
        return per_op(lambda i: bare.write("bench-bare", "k", VALUES[i % 64], token=TOKEN), batch)

    try:
        observed_batch(), bare_batch()  # warm up
        times = _common.interleaved({"observed": observed_batch, "bare": bare_batch}, rounds)
    finally:
        audit_log.removeHandler(handler)
        audit_log.propagate = True
        audit_log.setLevel(logging.NOTSET)
        handler.close()
        sink.close()
    return (statistics.median(times["observed"]), statistics.median(times["bare"]),
            _common.paired_ratio(times["observed"], times["bare"]))


@contextmanager
def postgres_dsn(dsn: str | None, fast: bool) -> Iterator[str]:
    if dsn is not None:
        yield dsn
        return
    with PostgresServer(settings=FAST_SETTINGS if fast else {}) as server:
        yield server.dsn


def bench_s3(ops: int, rounds: int) -> None:
    from fencing_coord.servers.moto_s3 import MotoS3Server
    from fencing_coord.stores.s3 import S3Store

    with MotoS3Server() as server:
        server.create_bucket("fc-bench")
        with S3Store("fc-bench", endpoint_url=server.endpoint, session=server.session()) as store:
            bench_store("S3 (moto)", store, ops, rounds, os.devnull, observed_only=False)


@contextmanager
def uvicorn(gate: str) -> Iterator[str]:
    """``bench/_http_app.py`` served by uvicorn with ``FC_GATE=gate``; yields its URL."""
    import os
    import sys

    from fencing_coord.servers import ManagedProcess, free_port, port_open, wait_until

    port = free_port()
    with tempfile.TemporaryDirectory() as log_dir:
        argv = [sys.executable, "-m", "uvicorn", "--factory", "_http_app:make_app", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", "--no-access-log"]
        process = ManagedProcess(argv, Path(log_dir) / "uvicorn.log", env={**os.environ, "FC_GATE": gate},
                                 cwd=Path(__file__).parent)
        process.start()
        try:
            wait_until(lambda: port_open("127.0.0.1", port), 60, f"uvicorn ({gate})")
            yield f"http://127.0.0.1:{port}"
        finally:
            process.stop()


def bench_http(ops: int, rounds: int, directory: Path) -> None:
    import httpx

    headers = {"Fencing-Token": str(TOKEN), "Fencing-Resource": "bench"}
    gates = {"memory store": "memory", "SQLite store": f"store:{directory / 'http-store.db'}",
             "SQLite txn": f"sqlite:{directory / 'http-txn.db'}"}
    with uvicorn("none") as plain_url, httpx.Client(headers=headers, timeout=30) as client:
        for label, gate in gates.items():
            with uvicorn(gate) as fenced_url:
                def request(url: str) -> Callable[[int], object]:
                    return lambda i: client.post(url + "/work", content=VALUES[i % 64]).raise_for_status()

                fenced_s, plain_s, ratio = compare(request(fenced_url), request(plain_url), ops, rounds)
                print(f"{'HTTP':<11} {'POST via ' + label:<25} fenced {fenced_s * 1e6:8.1f} us"
                      f"   plain {plain_s * 1e6:8.1f} us   ratio {ratio:5.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=3000, help="operations per side and measurement")
    parser.add_argument("--rounds", type=int, default=30, help="alternating batches per measurement")
    parser.add_argument("--dsn", help="an existing PostgreSQL (default: start a throwaway server)")
    parser.add_argument("--fast", action="store_true", help="durability off on both stores")
    parser.add_argument("--s3-ops", type=int, default=400, help="operations per side and measurement on S3")
    parser.add_argument("--http-ops", type=int, default=3000, help="requests per side and gate over HTTP")
    parser.add_argument("--only", default="sqlite,postgres,s3,http", help="comma-separated: which rows to run")
    parser.add_argument("--audit-log", default=os.devnull, help="where the observed side's audit records go")
    parser.add_argument("--observed-only", action="store_true", help="only the 'metrics + audit log' row")
    args = parser.parse_args()
    only = set(args.only.split(","))

    durability = "durability off" if args.fast else "durable commits"
    print(f"fenced vs plain: {args.rounds} pairs of batches of {args.ops // args.rounds} ops per side,"
          f" medians; {durability}; target ratio <= 1.15x (metrics + audit log: <= 1.10x);"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if "sqlite" in only:
            sqlite = stack.enter_context(SQLiteStore(directory / "bench.db",
                                                     synchronous="NORMAL" if args.fast else "FULL"))
            bench_store("SQLite", sqlite, args.ops, args.rounds, args.audit_log, args.observed_only)
        if "postgres" in only:
            postgres = stack.enter_context(PostgresStore(stack.enter_context(postgres_dsn(args.dsn, args.fast))))
            bench_store("PostgreSQL", postgres, args.ops, args.rounds, args.audit_log, args.observed_only)
        if "s3" in only:
            bench_s3(args.s3_ops, min(args.rounds, args.s3_ops))
        if "http" in only:
            bench_http(args.http_ops, args.rounds, directory)
    print(f"load average at the end {os.getloadavg()[0]:.1f} (above the CPU count, every side waits for a CPU"
          " after each I/O, and the ratios approach the ratios of CPU time)")


if __name__ == "__main__":
    main()
