"""Benchmark of our lock through tooz against tooz's own etcd and ZooKeeper drivers.

    python bench/tooz_locks.py [--iterations 200] [--rounds 15]

It starts its own etcd and standalone ZooKeeper (fencing_coord.servers) in temporary
directories. One run prints, per server, uncontended acquire+release per second through
tooz's API (``coord.get_lock(name)``, ``acquire()``/``release()``, the lock object
reused), one coordinator, one lock:

* etcd: ``fencing-coord+etcd://`` (ours, gRPC) and tooz's ``etcd3+http://`` (etcd3gw,
  etcd's JSON gateway);
* ZooKeeper: ``fencing-coord+zookeeper://`` (ours) and tooz's ``zookeeper://`` (kazoo's
  Lock);

and the ratios ours / tooz's (reported, no target: the drivers differ in what a lock
gives -- ours a fencing token and a fair queue). The kinds of one server run in
interleaved rounds, the order rotating; rates are medians, ratios medians of the ratios
within each round.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator

import _common  # bench/_common.py: this script's directory is on sys.path
from _common import Step
from tooz import coordination

from fencing_coord.servers.etcd import EtcdServer
from fencing_coord.servers.zookeeper import ZooKeeperServer


@contextlib.contextmanager
def tooz_lock(url: str) -> Iterator[Step]:
    """One started coordinator of ``url`` and one of its locks: acquire+release per step."""
    coord = coordination.get_coordinator(url, f"bench-{uuid.uuid4().hex[:8]}".encode())
    coord.start()
    lock = coord.get_lock(f"bench-{uuid.uuid4().hex[:8]}".encode())

    def step() -> None:
        # The default blocking acquire: tooz's drivers read ``timeout`` differently
        # (etcd3gw: the lease TTL), and nobody else takes this lock.
        if not lock.acquire():
            raise RuntimeError(f"{url}: lock not acquired")
        lock.release()

    try:
        yield step
    finally:
        coord.stop()


def host_port(url: str) -> str:
    return url.split("://", 1)[1].split("?", 1)[0].split("/", 1)[0]


def main() -> int:
    parser = _common.argument_parser(__doc__, url_help="(unused: the servers are started here)", seconds=0)
    args = parser.parse_args()
    args.rounds = min(args.rounds, 15)
    rows: list[tuple[str, float, float | None]] = []
    with EtcdServer() as etcd:
        where = host_port(etcd.url)
        measured = _common.uncontended({
            "ours": tooz_lock(f"fencing-coord+etcd://{where}?ttl=30"),
            "etcd3gw": tooz_lock(f"etcd3+http://{where}"),
        }, args.iterations, args.rounds)
        _common.print_rates({"fencing-coord+etcd": measured.rates["ours"],
                             "tooz etcd3+http (etcd3gw)": measured.rates["etcd3gw"]},
                            rounds=args.rounds, iterations=args.iterations)
        rows.append(("etcd: ours / tooz etcd3gw, uncontended", measured.ratios["etcd3gw"], None))
    with ZooKeeperServer() as zk:
        where = host_port(zk.url)
        measured = _common.uncontended({
            "ours": tooz_lock(f"fencing-coord+zookeeper://{where}?ttl=30"),
            "kazoo": tooz_lock(f"zookeeper://{where}"),
        }, args.iterations, args.rounds)
        _common.print_rates({"fencing-coord+zookeeper": measured.rates["ours"],
                             "tooz zookeeper (kazoo)": measured.rates["kazoo"]},
                            rounds=args.rounds, iterations=args.iterations)
        rows.append(("ZooKeeper: ours / tooz zookeeper, uncontended", measured.ratios["kazoo"], None))
    print("\nratios")
    return _common.print_ratios(rows)


if __name__ == "__main__":
    sys.exit(main())
