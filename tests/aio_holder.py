"""tests/holder.py's lock holder, written on the asyncio API (``fencing_coord.aio``):
the same command line, commands and reports (see holder.py), so that the fault tests
run it in place of the blocking one.

    python aio_holder.py URL --store sqlite:/path/state.db|etcd|zookeeper [--ttl 2] [--namespace NS] [--worker NAME]

Standard input is read natively (``connect_read_pipe``); nothing waits in a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from typing import TYPE_CHECKING

import fencing_coord as fc
from fencing_coord.aio import AsyncFencedResource, AsyncLockBackend, AsyncSQLiteStore, AsyncStore, wait_lost

if TYPE_CHECKING:
    from tests.holder import report_round, report_write, say
else:  # run as a script with -P (faults.Holder): tests/ goes last on sys.path, so that
    # tests/redis cannot hide the redis client library.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    from holder import report_round, report_write, say


# The services' own async stores, imported only when named (etcd's or ZooKeeper's client).
_SERVICE_STORES = {
    "etcd": "fencing_coord.backends.etcd.aio_store:AsyncEtcdStore",
    "zookeeper": "fencing_coord.backends.zookeeper.aio_store:AsyncZooKeeperStore",
}


async def open_store(spec: str, backend: AsyncLockBackend) -> AsyncStore:
    """The store a ``--store`` spec names (each store checks the backend's kind itself)."""
    if spec in _SERVICE_STORES:
        module, _, name = _SERVICE_STORES[spec].partition(":")
        store: AsyncStore = getattr(importlib.import_module(module), name)(backend)
        return store
    kind, _, path = spec.partition(":")
    assert kind == "sqlite", spec
    return await AsyncSQLiteStore.open(path)


async def stdin_lines() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve(backend: AsyncLockBackend, resource: AsyncFencedResource, lines: asyncio.StreamReader) -> None:
    grants: dict[str, fc.Grant] = {}
    lost_calls: list[str] = []

    def on_lost(grant: fc.Grant) -> None:
        lost_calls.append(grant.lost_reason or "")

    while words := (await lines.readline()).decode().split():
        command = words[0]
        if command == "acquire":
            grant = await backend.acquire(words[1], timeout=60)
            grant.on_lost(on_lost)
            grants[words[1]] = grant
            say(event="acquired", token=grant.token, session=getattr(backend, "session_id", None))
        elif command == "write":
            name, key, value = words[1:4]
            grant = grants[name]
            report_write(grant, await resource.write(name, key, value.encode(), token=grant.token))
        elif command == "release":
            try:
                say(event="released", released=await backend.release(grants.pop(words[1])), error=None)
            except fc.FencingCoordError as exc:  # e.g. BackendUnavailable: the outcome is unknown
                say(event="released", released=None, error=type(exc).__name__)
        elif command == "wait-lost":
            for grant in grants.values():
                await wait_lost(grant, 60)
            say(event="lost", reason=lost_calls[0] if lost_calls else None, calls=len(lost_calls))
        elif command == "exit":
            return


async def work(backend: AsyncLockBackend, resource: AsyncFencedResource, name: str,
               lines: asyncio.StreamReader) -> None:
    await lines.readline()  # "go": every worker starts at once
    stop = asyncio.ensure_future(lines.readline())  # "stop"
    while not stop.done():
        try:
            async with backend.lock(name, timeout=60) as grant:
                raw = await resource.read(name, "counter", token=grant.token)
                n = int(raw or b"0") + 1
                entry = await resource.write(name, f"entry-{n}", str(grant.token).encode(), token=grant.token)
                counter = await resource.write(name, "counter", str(n).encode(), token=grant.token)
                report_round(grant.token, n, entry, counter)
        except fc.StaleTokenError as exc:  # the fenced read was refused
            say(event="refused", reason=str(exc))
        except fc.BackendUnavailable as exc:  # the service is electing a leader: try again
            say(event="unavailable", reason=str(exc))
    say(event="done")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--store", required=True)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--namespace", default="faults")
    parser.add_argument("--worker")
    args = parser.parse_args()
    lines = await stdin_lines()
    backend = await fc.aio.connect(args.url, ttl=args.ttl, namespace=args.namespace)
    async with backend, await open_store(args.store, backend) as store:
        resource = AsyncFencedResource(store)
        say(event="ready", identity=backend.identity, session=getattr(backend, "session_id", None))
        if args.worker:
            await work(backend, resource, args.worker, lines)
        else:
            await serve(backend, resource, lines)


if __name__ == "__main__":
    asyncio.run(main())
