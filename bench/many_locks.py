"""One client holding many locks: what holding N locks costs, on etcd and ZooKeeper.

    python bench/many_locks.py [--counts 10,100,1000,10000] [--only etcd,zookeeper] [--rounds 3]

For each N, one backend (ttl 3 s: a keepalive round per second on etcd) acquires N
locks and holds them; it prints
* the mean acquire time of the last 10% of the N acquisitions (flat: no cost grows with N);
* the server's requests per keepalive round while the N locks are held and idle (etcd:
  every RPC its /metrics counts, keepalives included, over ``--rounds`` rounds; ZooKeeper:
  the packets ``mntr`` counts over the same time). Constant whatever N is the goal;
* the client's threads, and its resident memory per held lock: RSS growth / N, and the
  growth over the second half of the N acquisitions / (N/2), which leaves out what the
  first locks pay once (an allocator arena, a stream's buffers).

Each N runs in a new process (``multiprocessing`` spawn): in one process for every N,
memory freed by the previous N was reused and the RSS growth undercounted, even below
zero. Before the baseline, 100 locks are acquired and released one at a time (first-use
costs: buffers, caches), then one more is acquired and kept, the held keys' watch opened
for it: that stream's thread gets a malloc arena of its own (glibc: ~130 KiB, paid once
per process; it was 1.3 KiB a lock at N = 100). An RSS growth is counted in whole pages (4 KiB), which at N = 10
is up to 400 B a lock of noise. The acquire cost is the mean of the last max(10, N/10)
acquisitions.

It starts its own etcd and ZooKeeper. Targets (issue 13): requests per round and threads
constant in N, RSS < 2 KiB per held lock, acquire cost flat.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import re
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fencing_coord as fc
from fencing_coord.servers.etcd import EtcdServer
from fencing_coord.servers.zookeeper import ZooKeeperServer, four_letter_word

TTL = 3.0
_STARTED = re.compile(r'grpc_server_started_total\{grpc_method="(\w+)",grpc_service="([\w.]+)"[^}]*\} (\d+)')


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def etcd_requests(metrics_url: str) -> Callable[[], int]:
    def count() -> int:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
        return sum(int(n) for _, service, n in _STARTED.findall(text) if service.startswith("etcdserverpb."))

    return count


def zookeeper_packets(port: int) -> Callable[[], int]:
    def count() -> int:
        answer = four_letter_word(port, "mntr") or b""
        found = re.search(rb"zk_packets_received\s+(\d+)", answer)
        if found is None:
            raise RuntimeError("ZooKeeper answered no mntr (is 4lw.commands.whitelist set?)")
        return int(found.group(1))

    return count


def counter(kind: str, address: str) -> Callable[[], int]:
    """The server's request counter: ``etcd`` (its /metrics URL) or ``zookeeper`` (its port)."""
    return etcd_requests(address) if kind == "etcd" else zookeeper_packets(int(address))


def measure_one(url: str, n: int, rounds: int, kind: str, address: str) -> None:
    """One N, in a process of its own (see the module docstring); prints its row."""
    server_count = counter(kind, address)
    with fc.connect(url, ttl=TTL, namespace=f"bench-{uuid.uuid4().hex[:8]}") as backend:
        for i in range(100):  # first-use costs (buffers, caches), held one at a time
            backend.release(backend.acquire(f"warm-up-{i}", timeout=30))
        # And the held keys' watch (etcd), opened once a grant is held 0.1 s: its stream's
        # gRPC thread gets a malloc arena of its own, ~130 KiB once per process.
        kept = backend.acquire("warm-up-kept", timeout=30)
        time.sleep(0.5)
        rss = rss_bytes()
        tail = min(n, max(10, n // 10))
        grants = []
        tail_start = 0.0
        half = rss
        for i in range(n):
            if i == n - tail:
                tail_start = time.perf_counter()
            if i == n // 2:
                half = rss_bytes()
            grants.append(backend.acquire(f"lock-{i}", timeout=30))
        acquire_ms = (time.perf_counter() - tail_start) / tail * 1e3
        end = rss_bytes()
        per_lock = (end - rss) / n
        marginal = (end - half) / (n - n // 2)
        time.sleep(TTL / 3)  # let the acquisitions' own traffic settle
        before = server_count()
        time.sleep(rounds * TTL / 3)
        per_round = (server_count() - before) / rounds
        threads = threading.active_count()
        lost = sum(grant.lost for grant in [kept, *grants])
        print(f"  {n:>6} {acquire_ms:>10.2f} {per_round:>15.1f} {threads:>8} {per_lock:>9.0f}B {marginal:>9.0f}B"
              + (f"  ({lost} lost!)" if lost else ""), flush=True)


def measure(url: str, counts: list[int], rounds: int, kind: str, address: str) -> None:
    print(f"  {'N':>6} {'acquire ms':>10} {'requests/round':>15} {'threads':>8} {'RSS/lock':>10} {'2nd half':>10}",
          flush=True)
    spawn = multiprocessing.get_context("spawn")
    for n in counts:
        child = spawn.Process(target=measure_one, args=(url, n, rounds, kind, address))
        child.start()
        child.join()


@contextlib.contextmanager
def etcd() -> Iterator[tuple[str, str]]:
    with EtcdServer() as server:
        member: Any = server.members[0]
        yield server.url, member.client_url + "/metrics"


@contextlib.contextmanager
def zookeeper() -> Iterator[tuple[str, str]]:
    with ZooKeeperServer() as server:
        port = fc.parse_url(server.url).host_list(2181)[0][1]
        yield server.url, str(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--counts", default="10,100,1000,10000")
    parser.add_argument("--only", default="etcd,zookeeper")
    parser.add_argument("--rounds", type=int, default=3, help="keepalive rounds to count requests over")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.counts.split(",")]
    servers = {"etcd": etcd, "zookeeper": zookeeper}
    for name in args.only.split(","):
        with servers[name]() as (url, address):
            print(f"{name}: {url}, ttl {TTL:g} s", flush=True)
            measure(url, counts, args.rounds, name, address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
