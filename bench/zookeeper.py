"""Benchmark of the ZooKeeper backend against the raw floor and kazoo's own Lock.

    python bench/zookeeper.py [--url zookeeper://127.0.0.1:2181] [--fsync] [--rounds 25] [--seconds 4]

Without ``--url`` it starts its own standalone ZooKeeper (fencing_coord.servers.zookeeper)
in a temporary directory; ``--fsync`` makes that server fsync its log per write, as
production servers do (off by default, as for the test servers). One run prints:

* uncontended acquire+release per second, one client, one lock, for
  - the raw floor: create an ephemeral-sequential node, list the parent's children,
    delete the node: the three requests any queue lock needs, through kazoo's plain
    synchronous calls, no recipe around them;
  - kazoo's ``Lock`` (``client.Lock(path).acquire()/release()``, the object reused);
  - this library's ``backend.acquire()/release()``;
* contended lock handoffs per second, 4 client processes on one lock, for kazoo's
  ``Lock`` and for this library. A handoff is a grant to a different client than the
  previous one (re-grants to the same client do not count);
* the ratios: ours / floor (reported), and ours / kazoo ``Lock`` uncontended and
  contended, whose target is >= 1.0.

The uncontended kinds run in interleaved rounds (``--rounds`` of ``--iterations`` pairs,
the order rotating); rates are medians over the rounds, ratios the medians of the ratios
within each round. The contended runs take ``--seconds`` each, kazoo and ours paired
``--contended-rounds`` times (who goes first alternates); rates are medians, the ratio
the median of the per-pair ratios. The contended table also gives the client CPU time
per grant (all processes), which a busy machine disturbs less than the rates.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from kazoo.client import KazooClient

import fencing_coord as fc
from fencing_coord.config import parse_url
from fencing_coord.servers.zookeeper import ZooKeeperServer

Step = Callable[[], None]


def warm(step: Step, iterations: int) -> None:
    for _ in range(min(100, iterations)):  # connections, caches, first-use costs
        step()


def rate(step: Step, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return iterations / (time.perf_counter() - start)


def hosts_of(url: str) -> str:
    parsed = parse_url(url)
    hosts = ",".join(f"{h}:{p}" for h, p in parsed.host_list(2181))
    return hosts + ("/" + parsed.path.strip("/") if parsed.path else "")


def kazoo_client(url: str) -> Any:
    client = KazooClient(hosts=hosts_of(url), timeout=30)
    client.start(timeout=30)
    return client


@contextlib.contextmanager
def raw_floor(url: str) -> Iterator[Step]:
    """Create an ephemeral-sequential node, list the children, delete the node."""
    client = kazoo_client(url)
    parent = f"/bench/floor-{uuid.uuid4().hex}"
    client.ensure_path(parent)

    def step() -> None:
        node = client.create(parent + "/lock-", b"x", ephemeral=True, sequence=True)
        client.get_children(parent)
        client.delete(node)

    try:
        yield step
    finally:
        client.delete(parent, recursive=True)
        client.stop()
        client.close()


@contextlib.contextmanager
def kazoo_lock(url: str) -> Iterator[Step]:
    """kazoo's own Lock recipe, one object reused (its parent made once)."""
    client = kazoo_client(url)
    lock = client.Lock(f"/bench/kazoo-{uuid.uuid4().hex}", "bench")

    def step() -> None:
        if not lock.acquire(timeout=5):
            raise RuntimeError("kazoo Lock was not acquired")
        lock.release()

    try:
        yield step
    finally:
        client.stop()
        client.close()


@contextlib.contextmanager
def ours(url: str) -> Iterator[Step]:
    with fc.connect(url, ttl=30, namespace=f"bench-{uuid.uuid4().hex[:8]}") as backend:

        def step() -> None:
            backend.release(backend.acquire("orders", timeout=5))

        yield step


@dataclass
class Measured:
    """Per kind: the median over the rounds; per comparison: the median of the ratios
    measured within each round (neighbouring batches share the machine's mood of the
    moment, so their ratio is steadier than a ratio of medians on a busy host)."""

    rates: dict[str, float]
    ratios: dict[str, float]


def uncontended(url: str, iterations: int, rounds: int) -> Measured:
    """Interleaved rounds of the three kinds, the order rotating every round."""
    per_round: dict[str, list[float]] = {"floor": [], "kazoo": [], "ours": []}
    with raw_floor(url) as floor, kazoo_lock(url) as theirs, ours(url) as mine:
        steps = {"floor": floor, "kazoo": theirs, "ours": mine}
        for step in steps.values():
            warm(step, iterations)
        order = list(steps)
        for r in range(rounds):
            for kind in order[r % 3:] + order[: r % 3]:  # rotate: no kind always goes first
                per_round[kind].append(rate(steps[kind], iterations))
    mine_ = per_round["ours"]
    return Measured(
        rates={kind: statistics.median(values) for kind, values in per_round.items()},
        ratios={
            "floor": statistics.median(o / f for o, f in zip(mine_, per_round["floor"], strict=True)),
            "kazoo": statistics.median(o / k for o, k in zip(mine_, per_round["kazoo"], strict=True)),
        },
    )


# -- contended: one process per client ----------------------------------------------------------


def _contender(kind: str, url: str, name: str, start: float, stop: float, out: Any) -> None:
    """Take and give back lock ``name`` from ``start`` to ``stop`` (time.time());
    send back the time.monotonic() of every grant (one clock for every process)."""
    grants: list[float] = []
    if kind == "ours":
        backend = fc.connect(url, ttl=30, namespace=name)
        take: Callable[[], object] = lambda: backend.acquire("orders", timeout=30)  # noqa: E731
        give: Callable[[object], object] = backend.release  # type: ignore[assignment]
        done: Callable[[], None] = backend.close
    else:
        client = kazoo_client(url)
        lock = client.Lock(f"/bench/{name}", str(os.getpid()))

        def take() -> object:
            if not lock.acquire(timeout=30):
                raise RuntimeError("kazoo Lock was not acquired")
            return lock

        def give(_: object) -> None:
            lock.release()

        def done() -> None:
            client.stop()
            client.close()

    while time.time() < start:
        time.sleep(0.001)
    cpu = time.process_time()
    while time.time() < stop:
        held = take()
        grants.append(time.monotonic())
        give(held)
    cpu = time.process_time() - cpu
    done()
    out.send((os.getpid(), grants, cpu))
    out.close()


def contended(kind: str, url: str, clients: int, seconds: float) -> tuple[float, float, float]:
    """(grants per second, handoffs per second, client CPU seconds per grant) of
    ``clients`` processes on one lock."""
    ctx = multiprocessing.get_context("spawn")
    name = f"bench-{uuid.uuid4().hex[:8]}"
    start = time.time() + 3.0  # every process connected and waiting by then
    stop = start + seconds
    pipes, procs = [], []
    for _ in range(clients):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_contender, args=(kind, url, name, start, stop, send))
        proc.start()
        pipes.append(receive)
        procs.append(proc)
    timeline: list[tuple[float, int]] = []
    cpu = 0.0
    for receive in pipes:
        pid, grants, used = receive.recv()
        timeline.extend((t, pid) for t in grants)
        cpu += used
    for proc in procs:
        proc.join()
    timeline.sort()
    handoffs = sum(1 for (_, a), (_, b) in itertools.pairwise(timeline) if a != b)
    return len(timeline) / seconds, handoffs / seconds, cpu / max(len(timeline), 1)


@contextlib.contextmanager
def zookeeper_url(given: str | None, fsync: bool) -> Iterator[str]:
    if given:
        yield given
        return
    with ZooKeeperServer(force_sync=fsync) as server:
        yield server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", help="a zookeeper:// URL; default: start a local standalone server")
    parser.add_argument("--fsync", action="store_true", help="the local server fsyncs its log per write")
    parser.add_argument("--iterations", type=int, default=200, help="acquire+release pairs per round and kind")
    parser.add_argument("--rounds", type=int, default=25, help="interleaved uncontended rounds")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each contended run")
    parser.add_argument("--contended-rounds", type=int, default=5, help="paired contended runs")
    parser.add_argument("--clients", type=int, default=4, help="contending client processes")
    args = parser.parse_args(argv)

    with zookeeper_url(args.url, args.fsync) as url:
        server = "given" if args.url else f"local standalone, fsync {'on' if args.fsync else 'off'}"
        print(f"zookeeper: {url} ({server})  python {sys.version.split()[0]}  kazoo {version('kazoo')}"
              f"  cpus {os.cpu_count()}")
        measured = uncontended(url, args.iterations, args.rounds)
        floor, theirs, mine = (measured.rates[k] for k in ("floor", "kazoo", "ours"))
        print(f"\nuncontended acquire+release per second (1 client; median of {args.rounds} interleaved rounds"
              f" of {args.iterations})")
        print(f"  raw floor (create seq + get children + delete) {floor:10.0f}/s")
        print(f"  kazoo Lock                                     {theirs:10.0f}/s")
        print(f"  fencing-coord zookeeper backend                {mine:10.0f}/s")

        runs: dict[str, list[tuple[float, float, float]]] = {"kazoo": [], "ours": []}
        for round_ in range(args.contended_rounds):
            # Alternate who goes first, so that a slow spell does not always hit the same one.
            for kind in ("kazoo", "ours") if round_ % 2 == 0 else ("ours", "kazoo"):
                runs[kind].append(contended(kind, url, args.clients, args.seconds))
        contended_ratio = statistics.median(
            o[1] / max(k[1], 1e-9) for o, k in zip(runs["ours"], runs["kazoo"], strict=True)
        )
        print(f"\ncontended, {args.clients} client processes on one lock, {args.contended_rounds} paired runs of"
              f" {args.seconds:g} s (medians; client CPU: all processes, per grant)")
        for label, kind in (("kazoo Lock                     ", "kazoo"), ("fencing-coord zookeeper backend", "ours")):
            grants = statistics.median(r[0] for r in runs[kind])
            handoffs = statistics.median(r[1] for r in runs[kind])
            cpu = statistics.median(r[2] for r in runs[kind])
            print(f"  {label}  {grants:8.0f} grants/s  {handoffs:8.0f} handoffs/s  {cpu * 1e6:6.0f} us CPU/grant")

        print("\nratios (target; medians of the per-round / per-pair ratios)")
        print(f"  {'uncontended, ours / raw floor':48s} {measured.ratios['floor']:6.2f}x  (reported)")
        targets = [
            ("uncontended, ours / kazoo Lock", measured.ratios["kazoo"], 1.0),
            ("contended handoffs, ours / kazoo Lock", contended_ratio, 1.0),
        ]
        failed = 0
        for label, ratio, target in targets:
            ok = ratio >= target
            failed += not ok
            print(f"  {label:48s} {ratio:6.2f}x  (>= {target:g}x) {'ok' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
