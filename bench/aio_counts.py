"""What one uncontended acquire+release asks of the event loop and of Python on etcd,
counted rather than timed (load cannot bend a count): ours on the asyncio API against
raw grpc.aio sending the same two requests (``aio_floor.py``'s kinds).

    python bench/aio_counts.py [--iterations 300]

Per acquire+release, for ``raw aio``, ``ours aio`` and ``ours aio+s`` (the held keys'
watch stream open): tasks created (grpc.aio makes one per unary call), event-loop passes
(``_run_once``), callbacks scheduled (``call_soon``), timers (``call_at``) and futures
(``create_future``); then Python function calls per acquire+release (cProfile; a
coroutine's every resumption counts as a call), beside ``raw sync`` and ``ours sync``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import pstats
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aio_floor import _requests, open_held_keys_stream  # bench/aio_floor.py: this script's directory is on sys.path
from etcd3 import etcdrpc
from etcd3.etcdrpc import rpc_pb2_grpc

import fencing_coord as fc
from fencing_coord.config import parse_url
from fencing_coord.servers.etcd import EtcdServer

Body = Callable[[int], Awaitable[None]]
_COUNTED = ("_run_once", "call_soon", "call_at", "create_future")


async def _loop_counts(body: Body, iterations: int) -> dict[str, float]:
    """Run ``body(iterations)`` with the loop's methods counted: per iteration."""
    loop = asyncio.get_running_loop()
    counts: collections.Counter[str] = collections.Counter()

    def counting(name: str) -> Callable[..., Any]:
        real = getattr(loop, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return real(*args, **kwargs)

        return counted

    def factory(owner: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        counts["tasks"] += 1
        return asyncio.Task(coro, loop=owner, **kwargs)

    for name in _COUNTED:
        setattr(loop, name, counting(name))
    loop.set_task_factory(factory)
    try:
        await body(iterations)
    finally:
        loop.set_task_factory(None)
        for name in _COUNTED:
            delattr(loop, name)
    return {name: counts[name] / iterations for name in ("tasks", *_COUNTED)}


def _calls_per_iteration(run: Callable[[], object], iterations: int) -> float:
    profile = cProfile.Profile()
    profile.runcall(run)
    return float(pstats.Stats(profile).total_calls) / iterations  # type: ignore[attr-defined]


async def _measure(kind: str, body: Body, iterations: int, table: dict[str, dict[str, float]]) -> None:
    await body(3)  # first-use costs
    table[kind] = await _loop_counts(body, iterations)
    profile = cProfile.Profile()
    profile.enable()
    await body(iterations)
    profile.disable()
    table[kind]["calls"] = float(pstats.Stats(profile).total_calls) / iterations  # type: ignore[attr-defined]


async def _raw_aio(target: str, iterations: int, table: dict[str, dict[str, float]]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        lease = (await rpc_pb2_grpc.LeaseStub(channel).LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=60))).ID
        put, delete = _requests(f"/bench/aio-counts/{uuid.uuid4().hex}/".encode(), lease)

        async def body(n: int) -> None:
            for _ in range(n):
                await kv.Txn(put, timeout=10)
                await kv.DeleteRange(delete, timeout=10)

        await _measure("raw aio", body, iterations, table)


async def _ours_aio(url: str, iterations: int, table: dict[str, dict[str, float]]) -> None:
    async with await fc.aio.connect(url, namespace=f"aio-counts-{uuid.uuid4().hex[:8]}") as backend:
        async def body(n: int) -> None:
            for _ in range(n):
                await backend.release(await backend.acquire("orders", timeout=10))

        await _measure("ours aio", body, iterations, table)
        await open_held_keys_stream(backend)
        await _measure("ours aio+s", body, iterations, table)


def _sync_calls(url: str, target: str, iterations: int) -> dict[str, float]:
    channel = grpc.insecure_channel(target)
    try:
        kv = etcdrpc.KVStub(channel)
        lease = etcdrpc.LeaseStub(channel).LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=60)).ID
        put, delete = _requests(f"/bench/aio-counts/{uuid.uuid4().hex}/".encode(), lease)

        def raw() -> None:
            for _ in range(iterations):
                kv.Txn(put, timeout=10)
                kv.DeleteRange(delete, timeout=10)

        raw()
        found = {"raw sync": _calls_per_iteration(raw, iterations)}
    finally:
        channel.close()
    with fc.connect(url, namespace=f"aio-counts-{uuid.uuid4().hex[:8]}") as backend:
        def ours() -> None:
            for _ in range(iterations):
                backend.release(backend.acquire("orders", timeout=10))

        ours()
        found["ours sync"] = _calls_per_iteration(ours, iterations)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args(argv)
    table: dict[str, dict[str, float]] = {}
    with EtcdServer() as server:
        host, port = parse_url(server.url).host_list(2379)[0]
        target = f"{host}:{port}"
        asyncio.run(_raw_aio(target, args.iterations, table))
        asyncio.run(_ours_aio(server.url, args.iterations, table))
        sync_calls = _sync_calls(server.url, target, args.iterations)
    print(f"\netcd: per uncontended acquire+release ({args.iterations}), asyncio")
    print(f"  {'':11}{'tasks':>7}{'passes':>8}{'call_soon':>11}{'call_at':>9}{'futures':>9}{'py calls':>10}")
    for kind, row in table.items():
        print(f"  {kind:<11}{row['tasks']:7.2f}{row['_run_once']:8.2f}{row['call_soon']:11.2f}{row['call_at']:9.2f}"
              f"{row['create_future']:9.2f}{row['calls']:10.1f}")
    print("  blocking: " + ", ".join(f"{kind} {calls:.1f}" for kind, calls in sync_calls.items())
          + " Python calls per acquire+release")
    return 0


if __name__ == "__main__":
    sys.exit(main())
