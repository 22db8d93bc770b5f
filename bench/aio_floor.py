"""What asyncio costs the client library itself on etcd: gRPC's asyncio API (grpc.aio)
against its blocking API, for the requests of one uncontended acquire+release, beside
ours (issue 14's uncontended target is async >= 0.9x blocking).

    python bench/aio_floor.py [--rounds 9] [--iterations 300]

Five kinds, one client each, in interleaved rounds (``_common.interleaved``):

* ``raw sync``: a blocking gRPC channel sends what our acquire and release send when
  nobody waits: one Txn (put our key on a lease unless it exists, read the newest two
  keys and count them) and one DeleteRange;
* ``raw aio``: the same two requests, awaited on a grpc.aio channel;
* ``ours sync`` and ``ours aio``: ``backend.release(backend.acquire(...))`` on the
  blocking and the asyncio API;
* ``ours aio+s``: the same on the asyncio API once the backend has held a lock across
  an await, as any service soon has: its held keys' watch stream is open (a short hold
  must still cost nothing on it).

Prints per kind the median rate and CPU time per acquire+release (the process's, every
thread included), then the medians of the per-round ratios: raw aio / raw sync is the
floor that the asyncio API of any library on grpc.aio starts from; ours aio / ours sync
is issue 14's measure; ours aio / raw aio is our own overhead on that floor.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Callable

import _common  # bench/_common.py: this script's directory is on sys.path
import grpc
from etcd3 import etcdrpc
from etcd3.etcdrpc import rpc_pb2_grpc

import fencing_coord as fc
from fencing_coord.config import parse_url
from fencing_coord.servers.etcd import EtcdServer

Measured = tuple[float, float]  # (acquire+release per second, CPU seconds per acquire+release)


def _requests(prefix: bytes, lease: int) -> tuple[object, object]:
    """Our acquire's transaction as it is when nobody waits (put our key on our lease if
    it does not exist; read the newest two keys and count them) and our release's delete."""
    key, end = prefix + b"me", prefix[:-1] + b"0"
    newest_two = etcdrpc.RangeRequest(key=prefix, range_end=end, limit=2, sort_target=etcdrpc.RangeRequest.CREATE,
                                      sort_order=etcdrpc.RangeRequest.DESCEND)
    put = etcdrpc.TxnRequest(
        compare=[etcdrpc.Compare(key=key, target=etcdrpc.Compare.CREATE, result=etcdrpc.Compare.EQUAL,
                                 create_revision=0)],
        success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=b"x", lease=lease)),
                 etcdrpc.RequestOp(request_range=newest_two),
                 etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=prefix, range_end=end, count_only=True))],
        failure=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key))])
    return put, etcdrpc.DeleteRangeRequest(key=key)


def _timed(iterations: int, run: Callable[[], None]) -> Measured:
    started, cpu = time.monotonic(), time.process_time()
    run()
    return iterations / (time.monotonic() - started), (time.process_time() - cpu) / iterations


def raw_sync(target: str, iterations: int) -> Measured:
    channel = grpc.insecure_channel(target)
    kv = etcdrpc.KVStub(channel)
    lease = etcdrpc.LeaseStub(channel).LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=60)).ID
    put, delete = _requests(f"/bench/aio-floor/{uuid.uuid4().hex}/".encode(), lease)
    kv.Range(etcdrpc.RangeRequest(key=b"warm"))

    def run() -> None:
        for _ in range(iterations):
            kv.Txn(put, timeout=10)
            kv.DeleteRange(delete, timeout=10)

    try:
        return _timed(iterations, run)
    finally:
        channel.close()


def raw_aio(target: str, iterations: int) -> Measured:
    async def main() -> Measured:
        async with grpc.aio.insecure_channel(target) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            lease = (await rpc_pb2_grpc.LeaseStub(channel).LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=60))).ID
            put, delete = _requests(f"/bench/aio-floor/{uuid.uuid4().hex}/".encode(), lease)
            await kv.Range(etcdrpc.RangeRequest(key=b"warm"))
            started, cpu = time.monotonic(), time.process_time()
            for _ in range(iterations):
                await kv.Txn(put, timeout=10)
                await kv.DeleteRange(delete, timeout=10)
            return iterations / (time.monotonic() - started), (time.process_time() - cpu) / iterations

    return asyncio.run(main())


def ours_sync(url: str, iterations: int) -> Measured:
    with fc.connect(url, namespace=f"aio-floor-{uuid.uuid4().hex[:8]}") as backend:
        backend.release(backend.acquire("warm", timeout=10))

        def run() -> None:
            for _ in range(iterations):
                backend.release(backend.acquire("orders", timeout=10))

        return _timed(iterations, run)


async def open_held_keys_stream(backend: fc.aio.AsyncLockBackend) -> None:
    """Hold a lock until its key is watched (after 0.1 s), so that ``backend``'s held
    keys' stream is open from then on, as in any service that once held a lock across
    an await. A bench's pause: when the watch is created is not observable."""
    held = await backend.acquire("held", timeout=10)
    await asyncio.sleep(0.3)
    await backend.release(held)


def ours_aio(url: str, iterations: int, *, stream_open: bool = False) -> Measured:
    async def main() -> Measured:
        async with await fc.aio.connect(url, namespace=f"aio-floor-{uuid.uuid4().hex[:8]}") as backend:
            if stream_open:
                await open_held_keys_stream(backend)
            await backend.release(await backend.acquire("warm", timeout=10))
            started, cpu = time.monotonic(), time.process_time()
            for _ in range(iterations):
                await backend.release(await backend.acquire("orders", timeout=10))
            return iterations / (time.monotonic() - started), (time.process_time() - cpu) / iterations

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--iterations", type=int, default=300, help="acquire+release per kind and round")
    args = parser.parse_args(argv)
    with EtcdServer() as server:
        host, port = parse_url(server.url).host_list(2379)[0]
        target = f"{host}:{port}"
        kinds: dict[str, Callable[[], Measured]] = {
            "raw sync": lambda: raw_sync(target, args.iterations),
            "raw aio": lambda: raw_aio(target, args.iterations),
            "ours sync": lambda: ours_sync(server.url, args.iterations),
            "ours aio": lambda: ours_aio(server.url, args.iterations),
            "ours aio+s": lambda: ours_aio(server.url, args.iterations, stream_open=True),
        }
        per_round = _common.interleaved(kinds, args.rounds)
    print(f"\netcd: uncontended acquire+release, {args.rounds} rounds of {args.iterations}")
    for kind, rounds in per_round.items():
        rate = statistics.median(r for r, _ in rounds)
        cpu = statistics.median(c for _, c in rounds) * 1e3
        print(f"  {kind:<10} {rate:8.0f}/s   CPU {cpu:6.3f} ms per acquire+release")

    def ratio(a: str, b: str) -> float:
        return _common.paired_ratio([r for r, _ in per_round[a]], [r for r, _ in per_round[b]])

    print(f"  raw aio / raw sync    {ratio('raw aio', 'raw sync'):.2f}x  (grpc.aio's own floor)")
    print(f"  ours aio / ours sync  {ratio('ours aio', 'ours sync'):.2f}x  (issue 14: >= 0.9x)")
    print(f"  ours aio+s / ours sync {ratio('ours aio+s', 'ours sync'):.2f}x (the same, held keys' stream open)")
    print(f"  ours aio / raw aio    {ratio('ours aio', 'raw aio'):.2f}x  (our overhead on grpc.aio)")
    print(f"  ours sync / raw sync  {ratio('ours sync', 'raw sync'):.2f}x  (our overhead on blocking gRPC)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
