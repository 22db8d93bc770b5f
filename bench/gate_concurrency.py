"""The gate under concurrency: 8 writers holding the same token on one resource, each
writing its own key, fenced (``FencedResource.write``) against plain
(``UnfencedResource.write``) and, on ZooKeeper, against the floor (a raw znode
``set`` per write, one znode per writer, through kazoo).

    python bench/gate_concurrency.py [--writers 8] [--ops 200] [--rounds 21] [--only postgres,zookeeper]
                                     [--sizes 1,100,1000]

It starts a throwaway PostgreSQL (durable commits, as bench/gate.py) and a standalone
ZooKeeper. Every kind runs once per round, the order rotating (``_common.interleaved``);
a kind's figure is the median over the rounds of all writers' writes per second, a ratio
the median of the ratios measured within the same round.

``--sizes``: on ZooKeeper, the same fenced writes on resources that hold that many keys
(at least the writers' own; the others written once beforehand), one resource per size;
each writer writes to every size in turn, so the sizes share the load write by write. The
ratio of the median write latencies (smallest size over largest) shows whether a write's
cost depends on the resource's size.

Targets (issue 13): PostgreSQL fenced >= 0.8x plain; ZooKeeper fenced >= 0.5x a raw set,
and the same write rate whatever the resource's size.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import _common  # bench/_common.py: this script's directory is on sys.path

import fencing_coord as fc
from fencing_coord.gate import FencedResource, UnfencedResource
from fencing_coord.servers.postgres import PostgresServer
from fencing_coord.servers.zookeeper import ZooKeeperServer
from fencing_coord.stores import PostgresStore

TOKEN = 1_000
#: ``write(writer, i)``: writer number ``writer`` writes its ``i``-th value.
Write = Callable[[int, int], object]


def throughput(write: Write, writers: int, ops: int) -> float:
    """Writes per second of ``writers`` threads doing ``ops`` writes each, started together."""
    start = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def run(writer: int) -> None:
        start.wait()
        try:
            for i in range(ops):
                write(writer, i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return writers * ops / elapsed


def value(writer: int, i: int) -> bytes:
    return f"{writer}:{i}:".encode() + bytes(90)


def gate_writes(store: Any, resource: str) -> dict[str, Write]:
    fenced, plain = FencedResource(store), UnfencedResource(store)

    def fenced_write(writer: int, i: int) -> object:
        if not fenced.write(resource, f"k{writer}", value(writer, i), token=TOKEN).accepted:
            raise RuntimeError("a fenced write of the highest token was refused")
        return None

    def plain_write(writer: int, i: int) -> object:
        return plain.write(resource, f"k{writer}", value(writer, i), token=TOKEN)

    return {"fenced": fenced_write, "plain": plain_write}


def report(label: str, per_round: dict[str, list[float]], targets: dict[str, float | None]) -> int:
    for kind, values in per_round.items():
        print(f"  {label:<10} {kind:<8} {statistics.median(values):9.0f} writes/s")
    rows = [(f"{label}: fenced / {kind}", _common.paired_ratio(per_round["fenced"], per_round[kind]), target)
            for kind, target in targets.items()]
    return _common.print_ratios(rows)


def bench_postgres(writers: int, ops: int, rounds: int) -> int:
    with PostgresServer() as server, PostgresStore(server.dsn) as store:
        writes = gate_writes(store, f"bench-{uuid.uuid4().hex[:8]}")
        for write in writes.values():
            throughput(write, writers, max(1, ops // 4))  # connections, the row, the hint
        per_round = _common.interleaved(
            {kind: functools.partial(throughput, write, writers, ops) for kind, write in writes.items()}, rounds)
        return report("PostgreSQL", per_round, {"plain": 0.8})


def bench_zookeeper(writers: int, ops: int, rounds: int) -> int:
    from kazoo.client import KazooClient

    from fencing_coord.backends.zookeeper import ZooKeeperStore

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(ZooKeeperServer())
        backend = stack.enter_context(fc.connect(server.url, namespace=f"bench-{uuid.uuid4().hex[:8]}"))
        store = ZooKeeperStore(backend)
        writes = gate_writes(store, "doc")
        host, port = fc.parse_url(server.url).host_list(2181)[0]
        client = KazooClient(hosts=f"{host}:{port}", timeout=30)
        client.start(timeout=30)
        stack.callback(client.stop)
        base = f"/bench-raw-{uuid.uuid4().hex[:8]}"
        for writer in range(writers):
            client.create(f"{base}/k{writer}", b"", makepath=True)
        writes["raw set"] = lambda writer, i: client.set(f"{base}/k{writer}", value(writer, i))
        for write in writes.values():
            throughput(write, writers, max(1, ops // 4))
        per_round = _common.interleaved(
            {kind: functools.partial(throughput, write, writers, ops) for kind, write in writes.items()}, rounds)
        return report("ZooKeeper", per_round, {"raw set": 0.5, "plain": None})


def size_latencies(writes: dict[str, Write], writers: int, ops: int) -> dict[str, list[float]]:
    """Per kind, the latency of each write of ``writers`` threads that write ``ops`` times
    to every kind in turn (the order rotating per write): so every kind meets the same
    load, however the machine's load drifts."""
    kinds = list(writes)
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    lock = threading.Lock()

    def each(writer: int, i: int) -> None:
        shift = (writer + i) % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            began = time.perf_counter()
            writes[kind](writer, i)
            took = time.perf_counter() - began
            with lock:
                latencies[kind].append(took)

    throughput(each, writers, ops)
    return latencies


def bench_zookeeper_sizes(writers: int, ops: int, rounds: int, sizes: list[int]) -> int:
    from fencing_coord.backends.zookeeper import ZooKeeperStore

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(ZooKeeperServer())
        backend = stack.enter_context(fc.connect(server.url, namespace=f"bench-{uuid.uuid4().hex[:8]}"))
        store = ZooKeeperStore(backend)
        plain = UnfencedResource(store)
        writes: dict[str, Write] = {}
        for size in sizes:
            resource = f"size-{size}"
            for n in range(writers, max(size, writers)):  # the writers' own keys k0..k{writers-1} come below
                plain.write(resource, f"other-{n}", value(n, 0), token=TOKEN)
            writes[f"{max(size, writers)} keys"] = gate_writes(store, resource)["fenced"]
        size_latencies(writes, writers, max(1, ops // 4))
        latencies: dict[str, list[float]] = {kind: [] for kind in writes}
        for _ in range(rounds):
            for kind, measured in size_latencies(writes, writers, ops).items():
                latencies[kind].extend(measured)
        medians = {kind: statistics.median(measured) for kind, measured in latencies.items()}
        for kind, median in medians.items():
            print(f"  ZooKeeper  fenced, resource of {kind:<11} median {median * 1e6:7.0f} us per write"
                  f" ({writers} writers, {len(latencies[kind])} writes)")
        smallest, largest = f"{max(sizes[0], writers)} keys", f"{max(sizes[-1], writers)} keys"
        return _common.print_ratios([(f"ZooKeeper: write rate at {largest} / at {smallest}",
                                      medians[smallest] / medians[largest], 0.9)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--ops", type=int, default=200, help="writes per writer and round")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--only", default="postgres,zookeeper")
    parser.add_argument("--sizes", default="", help="ZooKeeper: resource sizes in keys, e.g. 1,100,1000")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    print(f"{args.writers} writers, token {TOKEN} for all, own key each; {args.rounds} interleaved rounds"
          f" of {args.ops} writes per writer")
    missed = 0
    if "postgres" in only:
        missed += bench_postgres(args.writers, args.ops, args.rounds)
    if "zookeeper" in only:
        missed += bench_zookeeper(args.writers, args.ops, args.rounds)
    if args.sizes:
        sizes = sorted(int(size) for size in args.sizes.split(","))
        missed += bench_zookeeper_sizes(args.writers, args.ops, args.rounds, sizes)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
