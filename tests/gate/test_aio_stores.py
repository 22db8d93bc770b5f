"""The async gate (fencing_coord.aio.AsyncFencedResource) on the async stores: the same
admission rules as the blocking gate, on a debug-mode loop that no store may block
(a callback over 50 ms fails the test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from fencing_coord.aio.gate import AsyncFencedResource, AsyncStore
from fencing_coord.aio.stores import AsyncMemoryStore, AsyncPostgresStore, AsyncSQLiteStore
from fencing_coord.errors import InvalidArgument, InvalidArgumentType, StaleTokenError
from fencing_coord.testing.aio_fixtures import run_guarded

OpenStore = Callable[[], Awaitable[AsyncStore]]

#: The stores with an async counterpart here (etcd's and ZooKeeper's: tests/etcd,
#: tests/zookeeper). The gate's STORES also has Redis and S3, which have none yet.
ASYNC_STORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=ASYNC_STORES)
def open_store(request: pytest.FixtureRequest, sqlite_path: str) -> OpenStore:
    kind: str = request.param
    if kind == "memory":
        async def memory() -> AsyncStore:
            return AsyncMemoryStore()
        return memory
    if kind == "sqlite":
        return lambda: AsyncSQLiteStore.open(sqlite_path)
    assert kind == "postgres", kind
    dsn: str = request.getfixturevalue("postgres_dsn")
    return lambda: AsyncPostgresStore.open(dsn)


def test_admission_rules(open_store: OpenStore) -> None:
    async def main() -> None:
        # A new name per run: run_guarded runs main again after a slow callback, on the
        # same database.
        name = f"orders-{uuid.uuid4().hex[:8]}"
        async with await open_store() as store:
            resource = AsyncFencedResource(store)
            assert await resource.highest_token(name) is None
            assert (await resource.write(name, "k", b"v7", token=7)).accepted
            refused = await resource.write(name, "k", b"v5", token=5)
            assert not refused.accepted
            assert refused.reason == "stale token 5 < 7"
            assert (await resource.write(name, "k", b"again", token=7)).accepted  # one grant writes again
            assert await resource.read(name, "k") == b"again"
            assert await resource.read(name, "k", token=9) == b"again"  # a fenced read raises the token
            assert await resource.highest_token(name) == 9
            with pytest.raises(StaleTokenError):
                await resource.read(name, "k", token=8)
            assert not (await resource.write(name, "k", b"late", token=8)).accepted
            assert await resource.read(name, "missing", token=9) is None
            strict = AsyncFencedResource(store, strict=True)
            assert not (await strict.write(name, "k", b"same", token=9)).accepted
            assert (await strict.write(name, "k", b"next", token=10)).accepted
            await store.plain_write("unfenced", "k", b"x")
            assert await store.plain_read("unfenced", "k") == b"x"

    run_guarded(main)


def test_concurrent_writers_leave_the_highest_token(open_store: OpenStore) -> None:
    async def main() -> None:
        name = f"jobs-{uuid.uuid4().hex[:8]}"  # a new name per run (see test_admission_rules)
        async with await open_store() as store:
            resource = AsyncFencedResource(store)
            results = await asyncio.gather(*(resource.write(name, "k", str(t).encode(), token=t)
                                             for t in range(1, 21)))
            accepted = [t for t, result in zip(range(1, 21), results, strict=True) if result.accepted]
            assert 20 in accepted
            assert await resource.read(name, "k") == b"20"
            assert await resource.highest_token(name) == 20

    run_guarded(main)


def test_bad_input_is_refused_before_the_store() -> None:
    async def main() -> None:
        resource = AsyncFencedResource(AsyncMemoryStore())
        with pytest.raises(InvalidArgumentType):
            await resource.write("orders", "k", "text", token=1)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            await resource.write("orders", "a/b", b"v", token=1)
        with pytest.raises(InvalidArgumentType):
            await resource.write("orders", "k", b"v", token=True)
        with pytest.raises(InvalidArgumentType, match=r"fencing_coord\.aio\.AsyncStore"):
            AsyncFencedResource({})  # type: ignore[arg-type]

    run_guarded(main)
