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

import contextlib
import os
import statistics
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import _common  # bench/_common.py: this script's directory is on sys.path
from _common import Give, Step, Take
from kazoo.client import KazooClient

from fencing_coord.config import parse_url
from fencing_coord.servers.zookeeper import ZooKeeperServer


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
    try:
        yield _common.library_step(client.Lock(f"/bench/kazoo-{uuid.uuid4().hex}", "bench"), "kazoo Lock")
    finally:
        client.stop()
        client.close()


# -- contended: one process per client ----------------------------------------------------------


@contextlib.contextmanager
def kazoo_contender(url: str, name: str) -> Iterator[tuple[Take, Give]]:
    """kazoo's Lock on ``/bench/<name>`` for a contending process."""
    client = kazoo_client(url)
    try:
        yield _common.library_lock(client.Lock(f"/bench/{name}", str(os.getpid())), "kazoo Lock")
    finally:
        client.stop()
        client.close()


@contextlib.contextmanager
def zookeeper_url(given: str | None, fsync: bool) -> Iterator[str]:
    if given:
        yield given
        return
    with ZooKeeperServer(force_sync=fsync) as server:
        yield server.url


def main(argv: list[str] | None = None) -> int:
    parser = _common.argument_parser(__doc__, url_help="a zookeeper:// URL; default: start a local standalone server",
                                     seconds=4.0)
    parser.add_argument("--fsync", action="store_true", help="the local server fsyncs its log per write")
    parser.add_argument("--contended-rounds", type=int, default=5, help="paired contended runs")
    args = parser.parse_args(argv)

    with zookeeper_url(args.url, args.fsync) as url:
        server = "given" if args.url else f"local standalone, fsync {'on' if args.fsync else 'off'}"
        print(f"zookeeper: {url} ({server})  python {sys.version.split()[0]}  kazoo {version('kazoo')}"
              f"  cpus {os.cpu_count()}")
        measured = _common.uncontended(
            {"floor": raw_floor(url), "kazoo": kazoo_lock(url), "ours": _common.ours(url)}, args.iterations, args.rounds
        )
        _common.print_rates({
            "raw floor (create seq + get children + delete)": measured.rates["floor"],
            "kazoo Lock": measured.rates["kazoo"],
            "fencing-coord zookeeper backend": measured.rates["ours"],
        }, rounds=args.rounds, iterations=args.iterations)

        # Paired runs, who goes first alternating, so that a slow spell does not always
        # hit the same one.
        runs = _common.interleaved({
            "kazoo": lambda: _common.contended(kazoo_contender, url, args.clients, args.seconds),
            "ours": lambda: _common.contended(_common.our_lock, url, args.clients, args.seconds),
        }, args.contended_rounds)
        contended_ratio = _common.paired_ratio([r.handoffs for r in runs["ours"]], [r.handoffs for r in runs["kazoo"]])
        print(f"\ncontended, {args.clients} client processes on one lock, {args.contended_rounds} paired runs of"
              f" {args.seconds:g} s (medians; client CPU: all processes, per grant)")
        for label, kind in (("kazoo Lock                     ", "kazoo"), ("fencing-coord zookeeper backend", "ours")):
            grants = statistics.median(r.grants for r in runs[kind])
            handoffs = statistics.median(r.handoffs for r in runs[kind])
            cpu = statistics.median(r.cpu for r in runs[kind])
            print(f"  {label}  {grants:8.0f} grants/s  {handoffs:8.0f} handoffs/s  {cpu * 1e6:6.0f} us CPU/grant")

        print("\nratios (target; medians of the per-round / per-pair ratios)")
        failed = _common.print_ratios([
            ("uncontended, ours / raw floor", measured.ratios["floor"], None),
            ("uncontended, ours / kazoo Lock", measured.ratios["kazoo"], 1.0),
            ("contended handoffs, ours / kazoo Lock", contended_ratio, 1.0),
        ])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
