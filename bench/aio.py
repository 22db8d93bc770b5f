"""Benchmark of the asyncio API (``fencing_coord.aio``) against the blocking API, on
etcd and on ZooKeeper.

    python bench/aio.py [--etcd-url URL] [--zk-url URL] [--rounds 15] [--iterations 200]

Without URLs it starts its own single etcd node and standalone ZooKeeper server in a
temporary directory. Per service it prints:

* uncontended acquire+release per second, one client, one lock: the blocking API
  (``backend.release(backend.acquire(...))``) and the async API (the same, awaited, on
  one event loop), in interleaved rounds (``_common.interleaved``: the order rotates),
  and the median of the per-round ratios async / blocking (target >= 0.9);
* contended handoffs per second, ``--clients`` clients on one lock for ``--seconds``: the
  blocking API with one thread per client, the async API with one coroutine per client
  on one loop (a handoff is a grant to another client than the previous one), in
  interleaved rounds; the median ratio async / blocking (target >= 1);
* 1,000 coroutines contending for 100 lock names on one event loop in one process, one
  backend: grants per second, the most threads the process had (target <= 8) and its
  resident memory at the middle and at the end of the run (bounded: no growth).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator

import _common  # bench/_common.py: this script's directory is on sys.path

import fencing_coord as fc
from fencing_coord.servers.etcd import EtcdServer
from fencing_coord.servers.zookeeper import ZooKeeperServer


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class CpuPerOp:
    """The process's CPU time (every thread: kazoo's and grpc's included) per operation,
    one figure per measured round: load bends it far less than wall-clock rates."""

    def __init__(self) -> None:
        self.rounds: list[float] = []
        self.measuring = False

    @contextlib.contextmanager
    def measure(self, operations: int) -> Iterator[None]:
        start = time.process_time()
        yield
        if self.measuring:
            self.rounds.append((time.process_time() - start) / operations)


class AsyncSide:
    """The async API's clients, living in one event loop (an asyncio.Runner) for the
    whole benchmark; each measurement is one run of the loop."""

    def __init__(self, runner: asyncio.Runner, url: str, clients: int) -> None:
        self.runner = runner
        namespace = f"bench-aio-{uuid.uuid4().hex[:8]}"

        async def open_all() -> list[fc.aio.AsyncLockBackend]:
            return [await fc.aio.connect(url, ttl=30, namespace=namespace) for _ in range(clients)]

        self.backends = runner.run(open_all())
        self.cpu = CpuPerOp()

    def close(self) -> None:
        async def close_all() -> None:
            for backend in self.backends:
                await backend.close()

        self.runner.run(close_all())

    def uncontended(self, iterations: int) -> float:
        backend = self.backends[0]

        async def loop() -> float:
            start = time.perf_counter()
            for _ in range(iterations):
                await backend.release(await backend.acquire("orders", timeout=5))
            return iterations / (time.perf_counter() - start)

        with self.cpu.measure(iterations):
            return self.runner.run(loop())

    def contended(self, seconds: float) -> float:
        async def client(index: int, backend: fc.aio.AsyncLockBackend, stop: float, out: list[int]) -> None:
            while time.monotonic() < stop:
                grant = await backend.acquire("contended", timeout=30)
                out.append(index)
                await backend.release(grant)

        async def run() -> float:
            order: list[int] = []
            stop = time.monotonic() + seconds
            await asyncio.gather(*(client(i, b, stop, order) for i, b in enumerate(self.backends)))
            return sum(1 for a, b in itertools.pairwise(order) if a != b) / seconds

        return self.runner.run(run())


class BlockingSide:
    """The blocking API's clients: one backend per client; contended with one thread each."""

    def __init__(self, url: str, clients: int) -> None:
        namespace = f"bench-sync-{uuid.uuid4().hex[:8]}"
        self.backends = [fc.connect(url, ttl=30, namespace=namespace) for _ in range(clients)]
        self.cpu = CpuPerOp()

    def close(self) -> None:
        for backend in self.backends:
            backend.close()

    def uncontended(self, iterations: int) -> float:
        backend = self.backends[0]

        def step() -> None:
            backend.release(backend.acquire("orders", timeout=5))

        with self.cpu.measure(iterations):
            return _common.rate(step, iterations)

    def contended(self, seconds: float) -> float:
        order: list[int] = []
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def client(index: int, backend: fc.LockBackend) -> None:
            while time.monotonic() < stop:
                grant = backend.acquire("contended", timeout=30)
                with lock:
                    order.append(index)
                backend.release(grant)

        threads = [threading.Thread(target=client, args=(i, b)) for i, b in enumerate(self.backends)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(1 for a, b in itertools.pairwise(order) if a != b) / seconds


def swarm(url: str, coroutines: int, names: int, seconds: float) -> dict[str, float]:
    """``coroutines`` tasks contending for ``names`` locks on one backend, one loop."""
    peak_threads = threading.active_count()

    async def run() -> dict[str, float]:
        nonlocal peak_threads
        grants = 0
        # timeout=30: the first requests of 1,000 coroutines queue behind each other for seconds
        namespace = f"bench-swarm-{uuid.uuid4().hex[:8]}"
        async with await fc.aio.connect(url, ttl=30, timeout=30, namespace=namespace) as backend:
            stop = time.monotonic() + seconds
            middle: list[float] = []

            async def contender(index: int) -> None:
                nonlocal grants
                name = f"lock-{index % names}"
                while time.monotonic() < stop:
                    async with backend.lock(name, timeout=60):
                        grants += 1
                        await asyncio.sleep(0)

            async def sample() -> None:
                nonlocal peak_threads
                half = time.monotonic() + seconds / 2
                while time.monotonic() < stop:
                    peak_threads = max(peak_threads, threading.active_count())
                    if not middle and time.monotonic() >= half:
                        middle.append(rss_mib())
                    await asyncio.sleep(0.05)

            started = time.monotonic()
            await asyncio.gather(sample(), *(contender(i) for i in range(coroutines)))
            elapsed = time.monotonic() - started
        return {"grants_per_s": grants / elapsed, "threads": float(peak_threads),
                "rss_middle": middle[0] if middle else rss_mib(), "rss_end": rss_mib()}

    return asyncio.run(run())


def compare(label: str, url: str, args: argparse.Namespace) -> list[tuple[str, float, float | None]]:
    blocking = BlockingSide(url, args.clients)
    with asyncio.Runner() as runner:
        async_side = AsyncSide(runner, url, args.clients)
        try:
            for side in (blocking, async_side):
                side.uncontended(min(100, args.iterations))  # warm up
                side.cpu.measuring = True
            rounds = _common.interleaved({"blocking": lambda: blocking.uncontended(args.iterations),
                                          "async": lambda: async_side.uncontended(args.iterations)}, args.rounds)
            handoffs = _common.interleaved({"blocking": lambda: blocking.contended(args.seconds),
                                            "async": lambda: async_side.contended(args.seconds)}, args.contended_rounds)
        finally:
            async_side.close()
            blocking.close()
    print(f"\n== {label}: {url}")
    _common.print_rates({f"blocking API ({label})": statistics.median(rounds["blocking"]),
                         f"async API ({label})": statistics.median(rounds["async"])},
                        rounds=args.rounds, iterations=args.iterations)
    cpu = {"blocking": blocking.cpu.rounds, "async": async_side.cpu.rounds}
    print("  CPU per acquire+release, the whole process: " + ", ".join(
        f"{kind} {1e3 * statistics.median(rounds_):.2f} ms" for kind, rounds_ in cpu.items()))
    print(f"\ncontended handoffs per second ({args.clients} clients, one lock; median of {args.contended_rounds} "
          f"interleaved runs of {args.seconds:g} s)")
    print(f"  blocking API (a thread per client)    {statistics.median(handoffs['blocking']):10.0f}/s")
    print(f"  async API (a coroutine per client)    {statistics.median(handoffs['async']):10.0f}/s")
    found = swarm(url, args.coroutines, args.names, args.swarm_seconds)
    print(f"\n{args.coroutines} coroutines on {args.names} lock names, one loop, one backend, {args.swarm_seconds:g} s:"
          f" {found['grants_per_s']:.0f} grants/s, at most {found['threads']:.0f} threads, resident memory "
          f"{found['rss_middle']:.1f} MiB at the middle and {found['rss_end']:.1f} MiB at the end")
    return [
        (f"{label}: uncontended async / blocking", _common.paired_ratio(rounds["async"], rounds["blocking"]), 0.9),
        (f"{label}: uncontended CPU per operation blocking / async",
         _common.paired_ratio(cpu["blocking"], cpu["async"]), None),
        (f"{label}: contended handoffs async / blocking", _common.paired_ratio(handoffs["async"],
                                                                               handoffs["blocking"]), 1.0),
        (f"{label}: threads with {args.coroutines} coroutines (<= 8)", 8.0 / max(found["threads"], 1.0), 1.0),
        (f"{label}: memory end / middle of the swarm", found["rss_end"] / max(found["rss_middle"], 1e-9), None),
    ]


@contextlib.contextmanager
def services(args: argparse.Namespace) -> Iterator[tuple[str | None, str | None]]:
    """The URLs of the services benchmarked (``--only``: the other is None), started here
    unless given."""
    with contextlib.ExitStack() as stack:
        etcd, zk = args.etcd_url, args.zk_url
        base = stack.enter_context(tempfile.TemporaryDirectory(prefix="fc-bench-aio-"))
        if etcd is None and args.only in (None, "etcd"):
            etcd = stack.enter_context(EtcdServer(base_dir=base)).url
        if zk is None and args.only in (None, "zookeeper"):
            zk = stack.enter_context(ZooKeeperServer()).url
        yield etcd, zk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--etcd-url", help="an etcd:// URL; default: start a local single node")
    parser.add_argument("--zk-url", help="a zookeeper:// URL; default: start a local standalone server")
    parser.add_argument("--iterations", type=int, default=200, help="acquire+release pairs per round and kind")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved uncontended rounds")
    parser.add_argument("--clients", type=int, default=4, help="contending clients")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each contended run")
    parser.add_argument("--contended-rounds", type=int, default=5, help="interleaved contended runs")
    parser.add_argument("--coroutines", type=int, default=1000)
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--swarm-seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["etcd", "zookeeper"], help="benchmark one service only")
    args = parser.parse_args(argv)
    rows: list[tuple[str, float, float | None]] = []
    with services(args) as (etcd, zk):
        for label, url in (("etcd", etcd), ("zookeeper", zk)):
            if url is not None and args.only in (None, label):
                fc.aio.config.backend_class(fc.parse_url(url))
                rows += compare(label, url, args)
    print("\nratios (medians of per-round ratios)")
    return 1 if _common.print_ratios(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
