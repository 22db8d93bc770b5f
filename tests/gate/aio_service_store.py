"""The async gate on the coordination services' own stores (AsyncEtcdStore,
AsyncZooKeeperStore): the scenario tests/etcd and tests/zookeeper run, on a debug-mode
loop that no store may block."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

import fencing_coord as fc
from fencing_coord.aio import AsyncLockBackend
from fencing_coord.aio.gate import AsyncFencedResource, AsyncStore
from fencing_coord.errors import StaleTokenError
from fencing_coord.testing.aio_fixtures import run_guarded

StoreOf = Callable[[AsyncLockBackend], AsyncStore]


def late_write_is_refused(url: str, store_of: StoreOf) -> None:
    """A holder that lost the lock writes late: refused, through the async store."""
    namespace = f"s-{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        async with await fc.aio.connect(url, namespace=namespace, ttl=4) as first, \
                await fc.aio.connect(url, namespace=namespace, ttl=4) as second:
            resource = AsyncFencedResource(store_of(first))
            old = await first.acquire("orders", timeout=10)
            assert (await resource.write("orders", "k", b"old", token=old.token)).accepted
            await first.release(old)  # (a pause past the ttl ends the same way: see the fault tests)
            new = await second.acquire("orders", timeout=10)
            assert (await resource.write("orders", "k", b"new", token=new.token)).accepted
            late = await resource.write("orders", "k", b"late", token=old.token)
            assert not late.accepted
            assert late.highest_token == new.token
            with pytest.raises(StaleTokenError):
                await resource.read("orders", "k", token=old.token)
            assert await resource.read("orders", "k", token=new.token) == b"new"
            assert await resource.highest_token("orders") == new.token
            results = await asyncio.gather(*(resource.write("orders", f"k{i}", b"x", token=new.token)
                                             for i in range(10)))
            assert all(r.accepted for r in results)

    run_guarded(main)
