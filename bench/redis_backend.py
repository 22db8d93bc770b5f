"""Benchmark of the Redis backend against the raw floor and redis-py's own Lock.

(Not ``bench/redis.py``: run by path, a script's directory comes first on ``sys.path``,
and mypy checks bench/ as top-level modules, so that name would hide redis-py.)

    python bench/redis_backend.py [--url redis://127.0.0.1:6379] [--data-dir /dev/shm] [--iterations 200] [--seconds 5]

Without ``--url`` it starts its own redis-server (fencing_coord.servers.redis) with AOF
and ``appendfsync always`` (what the backend requires by default) in a temporary
directory; ``--data-dir /dev/shm`` puts it on a tmpfs, which takes the disk's fsync out
of the figures. One run prints:

* uncontended acquire+release per second, one client, one lock, for
  - the raw floor: ``SET key value NX PX 30000`` plus ``DEL key`` on one connection, no
    fencing token, no fairness, no keepalive;
  - redis-py's ``Lock`` (``client.lock(name).acquire()/release()``: SET NX PX, then a
    compare-and-delete script), no fencing token either;
  - this library's ``backend.acquire()/release()``;
* contended grants and handoffs per second, client processes on one lock, for redis-py's
  ``Lock`` (which polls every 0.1 s while it waits) and for this library. A handoff is a
  grant to another client than the previous one;
* the ratios ours / floor and ours / redis-py Lock (reported; the issue sets no target).

The uncontended kinds run in interleaved rounds (``--rounds`` of ``--iterations`` pairs,
the order rotating); rates are medians over the rounds, ratios the medians of the ratios
within each round. The contended runs take ``--seconds`` each.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import _common  # bench/_common.py: this script's directory is on sys.path
import redis
from _common import Give, Step, Take

from fencing_coord.config import parse_url
from fencing_coord.servers.redis import RedisServer


def redis_client(url: str) -> Any:
    """A redis-py client of ``url``'s server and database (typed Any: redis-py's replies
    are unions)."""
    parsed = parse_url(url)
    host, port = parsed.host_list(6379)[0]
    return redis.Redis(host=host, port=port, db=int(parsed.path or 0), username=parsed.username,
                       password=parsed.password, socket_timeout=10)


@contextlib.contextmanager
def raw_floor(url: str) -> Iterator[Step]:
    """SET NX PX plus DEL per step, one connection."""
    client = redis_client(url)
    key = f"/bench/floor/{uuid.uuid4().hex}"

    def step() -> None:
        if not client.set(key, b"x", nx=True, px=30_000):
            raise RuntimeError("the floor's key was not free")
        client.delete(key)

    try:
        yield step
    finally:
        client.close()


def redis_py_lock(client: Any, name: str, wait: float) -> tuple[Take, Give]:
    """Take and give for redis-py's Lock ``name`` (30 s lease, as ours)."""
    lock = client.lock(name, timeout=30)

    def take() -> object:
        if not lock.acquire(blocking_timeout=wait):
            raise RuntimeError("redis-py Lock was not acquired")
        return lock

    def give(_: object) -> None:
        lock.release()

    return take, give


@contextlib.contextmanager
def redis_py_step(url: str) -> Iterator[Step]:
    """redis-py's own Lock: acquire (SET NX PX) and release (a compare-and-delete script)."""
    client = redis_client(url)
    take, give = redis_py_lock(client, f"/bench/redis-py/{uuid.uuid4().hex}", 5)

    def step() -> None:
        give(take())

    try:
        yield step
    finally:
        client.close()


@contextlib.contextmanager
def redis_py_contender(url: str, name: str) -> Iterator[tuple[Take, Give]]:
    """redis-py's Lock ``name`` for a contending process."""
    client = redis_client(url)
    try:
        yield redis_py_lock(client, f"/bench/redis-py/{name}", 30)
    finally:
        client.close()


@contextlib.contextmanager
def redis_url(given: str | None, data_dir: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    with RedisServer(temp_root=data_dir) as server:
        yield server.url


def main(argv: list[str] | None = None) -> int:
    parser = _common.argument_parser(__doc__, url_help="a redis:// URL; default: start a local redis-server",
                                     seconds=5.0)
    parser.add_argument("--data-dir", help="where the local redis-server keeps its AOF (default: the temp dir);"
                        " a tmpfs such as /dev/shm takes the disk's fsync out of the figures")
    args = parser.parse_args(argv)

    with redis_url(args.url, args.data_dir) as url:
        print(f"redis: {url}  data dir: {args.data_dir or 'system temp dir'}  python {sys.version.split()[0]}"
              f"  redis-py {redis.__version__}")
        measured = _common.uncontended(
            {"floor": raw_floor(url), "redis-py": redis_py_step(url), "ours": _common.ours(url)},
            args.iterations, args.rounds,
        )
        _common.print_rates({
            "raw floor (SET NX PX + DEL, one connection)": measured.rates["floor"],
            "redis-py Lock": measured.rates["redis-py"],
            "fencing-coord Redis backend": measured.rates["ours"],
        }, rounds=args.rounds, iterations=args.iterations)

        theirs = _common.contended(redis_py_contender, url, args.clients, args.seconds)
        mine = _common.contended(_common.our_lock, url, args.clients, args.seconds)
        print(f"\ncontended, {args.clients} client processes on one lock, {args.seconds:g} s each")
        print(f"  redis-py Lock                {theirs.grants:8.0f} grants/s  {theirs.handoffs:8.0f} handoffs/s"
              f"  {theirs.cpu * 1e3:6.2f} ms CPU/grant")
        print(f"  fencing-coord Redis backend  {mine.grants:8.0f} grants/s  {mine.handoffs:8.0f} handoffs/s"
              f"  {mine.cpu * 1e3:6.2f} ms CPU/grant")

        print("\nratios (no targets set; uncontended: median of the per-round ratios)")
        _common.print_ratios([
            ("uncontended, ours / raw floor", measured.ratios["floor"], None),
            ("uncontended, ours / redis-py Lock", measured.ratios["redis-py"], None),
            ("contended handoffs, ours / redis-py Lock", mine.handoffs / max(theirs.handoffs, 1e-9), None),
        ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
