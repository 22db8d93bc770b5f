"""What fencing costs: fenced write vs a plain upsert, fenced read vs a plain read.

    python bench/gate.py                      # SQLite in a temp dir + a throwaway PostgreSQL
    python bench/gate.py --dsn postgresql://… # use an existing PostgreSQL instead
    python bench/gate.py --ops 5000 --rounds 7

Both sides go through the same API and argument checks, on the same store and table:
``FencedResource.write`` (one atomic check-and-upsert) against ``UnfencedResource.write``
(the bare upsert), ``read(token=t)`` against ``read()``. The fenced side uses one token
throughout, as a lock holder does while it holds its grant; the lines marked "new token
each op" show the first operation of every grant (the token is raised each time).
Batches of fenced and plain operations alternate, and the median batch of each is
compared, so drift (caches, autovacuum, the disk) hits both sides alike.

The stores run with their durable defaults: SQLite ``synchronous=FULL`` in WAL mode and
PostgreSQL with ``fsync=on``, ``synchronous_commit=on``, so each write waits for a flush
on both sides. ``--fast`` turns durability off (SQLite ``synchronous=NORMAL``,
PostgreSQL ``fsync=off``, ``synchronous_commit=off``) to show the CPU and round-trip
cost alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from fencing_coord.gate import FencedResource, UnfencedResource
from fencing_coord.servers.postgres import FAST_SETTINGS, PostgresServer
from fencing_coord.stores import PostgresStore, SQLiteStore, Store

VALUE = bytes(range(100))
TOKEN = 1_000


def per_op(op: Callable[[int], object], ops: int) -> float:
    """Seconds per call of ``op(i)`` over ``ops`` calls."""
    start = time.perf_counter()
    for i in range(ops):
        op(i)
    return (time.perf_counter() - start) / ops


def compare(fenced: Callable[[int], object], plain: Callable[[int], object], ops: int, rounds: int) -> tuple[float, float]:
    """Median seconds per op of each side, over ``rounds`` alternating batches."""
    per_op(fenced, ops // 10)  # warm up: prepared statements, caches
    per_op(plain, ops // 10)
    fenced_times, plain_times = [], []
    for _ in range(rounds):
        fenced_times.append(per_op(fenced, ops // rounds))
        plain_times.append(per_op(plain, ops // rounds))
    return statistics.median(fenced_times), statistics.median(plain_times)


def bench_store(label: str, store: Store, ops: int, rounds: int) -> None:
    fenced, plain = FencedResource(store), UnfencedResource(store)
    fenced.write("bench-fenced", "k", VALUE, token=TOKEN).raise_for_status()
    plain.write("bench-plain", "k", VALUE, token=TOKEN)
    next_token = iter(range(TOKEN + 1, 2**62))

    rows = [
        ("write", *compare(lambda i: fenced.write("bench-fenced", "k", VALUE, token=TOKEN),
                           lambda i: plain.write("bench-plain", "k", VALUE, token=TOKEN), ops, rounds)),
        ("read", *compare(lambda i: fenced.read("bench-fenced", "k", token=TOKEN),
                          lambda i: plain.read("bench-plain", "k"), ops, rounds)),
        ("write, new token each op", *compare(
            lambda i: fenced.write("bench-fenced", "k", VALUE, token=next(next_token)),
            lambda i: plain.write("bench-plain", "k", VALUE, token=TOKEN), ops, rounds)),
        ("read, new token each op", *compare(
            lambda i: fenced.read("bench-fenced", "k", token=next(next_token)),
            lambda i: plain.read("bench-plain", "k"), ops, rounds)),
    ]
    for what, fenced_s, plain_s in rows:
        print(f"{label:<11} {what:<25} fenced {fenced_s * 1e6:8.1f} us   plain {plain_s * 1e6:8.1f} us"
              f"   ratio {fenced_s / plain_s:5.2f}x")


@contextmanager
def postgres_dsn(dsn: str | None, fast: bool) -> Iterator[str]:
    if dsn is not None:
        yield dsn
        return
    with PostgresServer(settings=FAST_SETTINGS if fast else {}) as server:
        yield server.dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=3000, help="operations per side and measurement")
    parser.add_argument("--rounds", type=int, default=5, help="alternating batches per measurement")
    parser.add_argument("--dsn", help="an existing PostgreSQL (default: start a throwaway server)")
    parser.add_argument("--fast", action="store_true", help="durability off on both stores")
    args = parser.parse_args()

    durability = "durability off" if args.fast else "durable commits"
    print(f"fenced vs plain, median of {args.rounds} alternating batches of {args.ops // args.rounds} ops,"
          f" {durability}; target ratio <= 1.15x")
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sqlite = stack.enter_context(SQLiteStore(directory / "bench.db", synchronous="NORMAL" if args.fast else "FULL"))
        bench_store("SQLite", sqlite, args.ops, args.rounds)
        postgres = stack.enter_context(PostgresStore(stack.enter_context(postgres_dsn(args.dsn, args.fast))))
        bench_store("PostgreSQL", postgres, args.ops, args.rounds)


if __name__ == "__main__":
    main()
