"""One client holding many locks: what holding N locks costs, on etcd and ZooKeeper.

    python bench/many_locks.py [--counts 10,100,1000,10000] [--only etcd,zookeeper] [--rounds 3]

For each N, one backend (ttl 3 s: a keepalive round per second on etcd) acquires N
locks and holds them; it prints
* the mean acquire time of the last 10% of the N acquisitions (flat: no cost grows with N);
* the server's requests per keepalive round while the N locks are held and idle (etcd:
  every RPC its /metrics counts, keepalives included, over ``--rounds`` rounds; ZooKeeper:
  the packets ``mntr`` counts over the same time). Constant whatever N is the goal;
* the client's threads, and its resident memory per held lock (RSS growth / N).

It starts its own etcd and ZooKeeper. Targets (issue 13): requests per round and threads
constant in N, RSS < 2 KiB per held lock, acquire cost flat.
"""

from __future__ import annotations

import argparse
import contextlib
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


def measure(url: str, counts: list[int], rounds: int, server_count: Callable[[], int]) -> None:
    print(f"  {'N':>6} {'acquire ms':>10} {'requests/round':>15} {'threads':>8} {'RSS/lock':>10}")
    for n in counts:
        with fc.connect(url, ttl=TTL, namespace=f"bench-{uuid.uuid4().hex[:8]}") as backend:
            backend.release(backend.acquire("warm-up", timeout=30))
            rss = rss_bytes()
            tail = max(1, n // 10)
            grants = []
            tail_start = 0.0
            for i in range(n):
                if i == n - tail:
                    tail_start = time.perf_counter()
                grants.append(backend.acquire(f"lock-{i}", timeout=30))
            acquire_ms = (time.perf_counter() - tail_start) / tail * 1e3
            per_lock = (rss_bytes() - rss) / n
            time.sleep(TTL / 3)  # let the acquisitions' own traffic settle
            before = server_count()
            time.sleep(rounds * TTL / 3)
            per_round = (server_count() - before) / rounds
            threads = threading.active_count()
            lost = sum(grant.lost for grant in grants)
            print(f"  {n:>6} {acquire_ms:>10.2f} {per_round:>15.1f} {threads:>8} {per_lock:>9.0f}B"
                  + (f"  ({lost} lost!)" if lost else ""), flush=True)


@contextlib.contextmanager
def etcd() -> Iterator[tuple[str, Callable[[], int]]]:
    with EtcdServer() as server:
        member: Any = server.members[0]
        yield server.url, etcd_requests(member.client_url + "/metrics")


@contextlib.contextmanager
def zookeeper() -> Iterator[tuple[str, Callable[[], int]]]:
    with ZooKeeperServer() as server:
        port = fc.parse_url(server.url).host_list(2181)[0][1]
        yield server.url, zookeeper_packets(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--counts", default="10,100,1000,10000")
    parser.add_argument("--only", default="etcd,zookeeper")
    parser.add_argument("--rounds", type=int, default=3, help="keepalive rounds to count requests over")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.counts.split(",")]
    servers = {"etcd": etcd, "zookeeper": zookeeper}
    for name in args.only.split(","):
        with servers[name]() as (url, server_count):
            print(f"{name}: {url}, ttl {TTL:g} s")
            measure(url, counts, args.rounds, server_count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
