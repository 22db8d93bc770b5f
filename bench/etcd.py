"""Benchmark of the etcd backend against the raw floor and python3-etcd3's own Lock.

    python bench/etcd.py [--url etcd://127.0.0.1:2379] [--iterations 2000] [--seconds 5]

Without ``--url`` it starts its own single etcd node (fencing_coord.servers.etcd) in a
temporary directory. One run prints:

* uncontended acquire+release per second, one client, one lock, for
  - the raw floor: one create transaction (put if absent, with a lease granted
    beforehand) plus one delete, on the same gRPC channel, no library around them;
  - python3-etcd3's ``Lock`` (``client.lock(name).acquire()/release()``);
  - this library's ``backend.acquire()/release()``;
* contended lock handoffs per second, 4 client processes on one lock, for
  python3-etcd3's ``Lock`` and for this library. A handoff is a grant to a different
  client than the previous one (re-grants to the same client do not count);
* the ratios the issue sets targets for: ours / floor >= 0.85, ours / etcd3 Lock
  >= 1.4 uncontended, and ours >= etcd3 Lock contended.

The uncontended kinds run in interleaved rounds (``--rounds`` of ``--iterations``
pairs, the order rotating); rates are medians over the rounds, ratios the medians of
the ratios within each round. The contended runs take ``--seconds`` each.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import etcd3
import grpc
from etcd3 import etcdrpc

import fencing_coord as fc
from fencing_coord.config import parse_url
from fencing_coord.servers.etcd import EtcdServer

Step = Callable[[], None]


def warm(step: Step, iterations: int) -> None:
    for _ in range(min(100, iterations)):  # connections, caches, first-use costs
        step()


def rate(step: Step, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return iterations / (time.perf_counter() - start)


@contextlib.contextmanager
def raw_floor(url: str) -> Iterator[Step]:
    """One create txn plus one delete per step, existing lease, same channel."""
    host, port = parse_url(url).host_list(2379)[0]
    channel = grpc.insecure_channel(f"{host}:{port}")
    kv, leases = etcdrpc.KVStub(channel), etcdrpc.LeaseStub(channel)
    lease = leases.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=3600)).ID  # outlives the run: no keepalive here
    key = f"/bench/floor/{uuid.uuid4().hex}".encode()
    absent = etcdrpc.Compare(key=key, target=etcdrpc.Compare.CREATE, result=etcdrpc.Compare.EQUAL, create_revision=0)
    create = etcdrpc.TxnRequest(
        compare=[absent], success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=b"x", lease=lease))]
    )
    delete = etcdrpc.DeleteRangeRequest(key=key)

    def step() -> None:
        if not kv.Txn(create, timeout=5).succeeded:
            raise RuntimeError("the floor's key was not free")
        kv.DeleteRange(delete, timeout=5)

    try:
        yield step
    finally:
        leases.LeaseRevoke(etcdrpc.LeaseRevokeRequest(ID=lease))
        channel.close()


def etcd3_client(url: str) -> Any:
    host, port = parse_url(url).host_list(2379)[0]
    return etcd3.client(host=host, port=port, timeout=10)


@contextlib.contextmanager
def etcd3_lock(url: str) -> Iterator[Step]:
    """python3-etcd3's own Lock: acquire (a new lease + a txn) and release (a txn)."""
    client = etcd3_client(url)
    lock = client.lock(f"bench-{uuid.uuid4().hex}", ttl=30)

    def step() -> None:
        if not lock.acquire(timeout=5):
            raise RuntimeError("etcd3 Lock was not acquired")
        lock.release()

    try:
        yield step
    finally:
        client.close()


@contextlib.contextmanager
def ours(url: str) -> Iterator[Step]:
    with fc.connect(url, ttl=30, namespace=f"bench-{uuid.uuid4().hex[:8]}") as backend:

        def step() -> None:
            backend.release(backend.acquire("orders", timeout=5))

        yield step


@dataclass
class Uncontended:
    """Per kind: the median rate over the rounds; per pair: the median of the ratios
    measured within each round (neighbouring batches share the machine's and the
    disk's mood of the moment, so their ratio is steadier than a ratio of medians)."""

    rates: dict[str, float]
    ratios: dict[str, float]


def uncontended(url: str, iterations: int, rounds: int) -> Uncontended:
    per_round: dict[str, list[float]] = {"floor": [], "etcd3": [], "ours": []}
    with raw_floor(url) as floor, etcd3_lock(url) as theirs, ours(url) as mine:
        steps = {"floor": floor, "etcd3": theirs, "ours": mine}
        for step in steps.values():
            warm(step, iterations)
        order = list(steps)
        for r in range(rounds):
            for kind in order[r % 3:] + order[: r % 3]:  # rotate: no kind always goes first
                per_round[kind].append(rate(steps[kind], iterations))
    ours_ = per_round["ours"]
    return Uncontended(
        rates={kind: statistics.median(values) for kind, values in per_round.items()},
        ratios={
            "floor": statistics.median(o / f for o, f in zip(ours_, per_round["floor"], strict=True)),
            "etcd3": statistics.median(o / t for o, t in zip(ours_, per_round["etcd3"], strict=True)),
        },
    )


# -- contended: one process per client ----------------------------------------------------------


def quiet_etcd3_watcher() -> list[BaseException]:
    """python3-etcd3 0.13's watcher thread dies with ``NameError: six`` whenever its
    stream ends (watch.py uses ``six`` without importing it). That is noise here: keep
    those errors out of the output and return the list they are collected in."""
    default = threading.excepthook
    seen: list[BaseException] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, NameError) and "six" in str(args.exc_value):
            seen.append(args.exc_value)
        else:
            default(args)

    threading.excepthook = hook
    return seen


def _contender(kind: str, url: str, name: str, start: float, stop: float, out: Any) -> None:
    """Take and give back lock ``name`` from ``start`` to ``stop`` (time.time());
    send back the time.monotonic() of every grant (one clock for every process)."""
    watcher_errors = quiet_etcd3_watcher()
    grants: list[float] = []
    if kind == "ours":
        backend = fc.connect(url, ttl=30, namespace=name)
        take: Callable[[], object] = lambda: backend.acquire("orders", timeout=30)  # noqa: E731
        give: Callable[[object], object] = backend.release  # type: ignore[assignment]
        done: Callable[[], None] = backend.close
    else:
        client = etcd3_client(url)
        lock = client.lock(name, ttl=30)

        def take() -> object:
            if not lock.acquire(timeout=30):
                raise RuntimeError("etcd3 Lock was not acquired")
            return lock

        def give(_: object) -> None:
            lock.release()

        done = client.close
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < stop:
        held = take()
        grants.append(time.monotonic())
        give(held)
    done()
    out.send((os.getpid(), grants, len(watcher_errors)))
    out.close()


def contended(kind: str, url: str, clients: int, seconds: float) -> tuple[float, float, int]:
    """(grants per second, handoffs per second, python3-etcd3 watcher crashes) of
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
    crashes = 0
    for receive in pipes:
        pid, grants, errors = receive.recv()
        timeline.extend((t, pid) for t in grants)
        crashes += errors
    for proc in procs:
        proc.join()
    timeline.sort()
    handoffs = sum(1 for (_, a), (_, b) in itertools.pairwise(timeline) if a != b)
    return len(timeline) / seconds, handoffs / seconds, crashes


@contextlib.contextmanager
def etcd_url(given: str | None, data_dir: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(tempfile.TemporaryDirectory(prefix="fc-bench-etcd-", dir=data_dir))
        server = stack.enter_context(EtcdServer(base_dir=base))
        yield server.url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an etcd:// URL; default: start a local single node")
    parser.add_argument("--iterations", type=int, default=200, help="acquire+release pairs per round and kind")
    parser.add_argument("--rounds", type=int, default=25, help="interleaved uncontended rounds")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each contended run")
    parser.add_argument("--clients", type=int, default=4, help="contending client processes")
    parser.add_argument("--data-dir", help="where the local etcd keeps its data (default: the temp dir);"
                        " a tmpfs such as /dev/shm takes the disk's fsync out of the figures")
    args = parser.parse_args(argv)
    main_errors = quiet_etcd3_watcher()

    with etcd_url(args.url, args.data_dir) as url:
        print(f"etcd: {url}  python {sys.version.split()[0]}  etcd3 {etcd3.__version__}  grpcio {grpc.__version__}")
        measured = uncontended(url, args.iterations, args.rounds)
        floor, theirs, mine = (measured.rates[k] for k in ("floor", "etcd3", "ours"))
        print(f"\nuncontended acquire+release per second (1 client; median of {args.rounds} interleaved rounds"
              f" of {args.iterations})")
        print(f"  raw floor (create txn + delete, existing lease) {floor:10.0f}/s")
        print(f"  python3-etcd3 Lock                              {theirs:10.0f}/s")
        print(f"  fencing-coord etcd backend                      {mine:10.0f}/s")

        their_grants, their_handoffs, crashes = contended("etcd3", url, args.clients, args.seconds)
        our_grants, our_handoffs, _ = contended("ours", url, args.clients, args.seconds)
        print(f"\ncontended, {args.clients} client processes on one lock, {args.seconds:g} s each")
        print(f"  python3-etcd3 Lock          {their_grants:8.0f} grants/s  {their_handoffs:8.0f} handoffs/s")
        print(f"  fencing-coord etcd backend  {our_grants:8.0f} grants/s  {our_handoffs:8.0f} handoffs/s")
        crashes += len(main_errors)
        if crashes:
            print("  (python3-etcd3's watcher thread raised NameError: six when its streams closed at client"
                  " close: a bug of python3-etcd3 0.13, kept out of this output)")

        targets = [
            ("uncontended, ours / raw floor", measured.ratios["floor"], 0.85),
            ("uncontended, ours / python3-etcd3 Lock", measured.ratios["etcd3"], 1.4),
            ("contended handoffs, ours / python3-etcd3 Lock", our_handoffs / max(their_handoffs, 1e-9), 1.0),
        ]
        print("\nratios (target; uncontended: median of the per-round ratios)")
        failed = 0
        for label, ratio, target in targets:
            ok = ratio >= target
            failed += not ok
            print(f"  {label:48s} {ratio:6.2f}x  (>= {target:g}x) {'ok' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
