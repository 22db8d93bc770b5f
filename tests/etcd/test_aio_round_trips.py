"""The asyncio etcd driver sends the blocking driver's requests, no more: an uncontended
acquire is one Txn and a release one DeleteRange, and a waiter whose predecessor was the
holder is granted from the holder's DELETE event, with no request of its own."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import fencing_coord as fc

from .conftest import EtcdTarget, rpc_counts

PROMPT = 30.0


def _kv_calls(target: EtcdTarget) -> dict[str, int]:
    assert target.cluster is not None
    counts = rpc_counts(target.cluster.members[0])
    return {m: counts[m] for m in ("Txn", "Range", "Put", "DeleteRange")}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {m: after[m] - before[m] for m in before if after[m] != before[m]}


@pytest.fixture
def counted(etcd_single: EtcdTarget) -> EtcdTarget:
    if etcd_single.cluster is None:
        pytest.skip("counts requests on the server's /metrics; not available for a container")
    return etcd_single


def test_uncontended_acquire_and_release_are_one_request_each(counted: EtcdTarget) -> None:
    async def main() -> None:
        namespace = f"rt-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(counted.url, namespace=namespace) as backend:
            await backend.release(await backend.acquire("warm-up", timeout=PROMPT))
            start = await asyncio.to_thread(_kv_calls, counted)
            grant = await backend.acquire("orders", timeout=PROMPT)
            acquired = await asyncio.to_thread(_kv_calls, counted)
            assert await backend.release(grant) is True
            released = await asyncio.to_thread(_kv_calls, counted)
            assert await backend.try_acquire("orders") is not None
            tried = await asyncio.to_thread(_kv_calls, counted)
        assert _delta(start, acquired) == {"Txn": 1}
        assert _delta(acquired, released) == {"DeleteRange": 1}
        assert _delta(released, tried) == {"Txn": 1}

    asyncio.run(main())


def test_a_first_waiter_is_granted_from_the_watch_event(counted: EtcdTarget) -> None:
    """The holder's delete is the whole handoff (as the blocking driver's)."""
    assert counted.cluster is not None
    member = counted.cluster.members[0]

    async def main() -> None:
        namespace = f"rt-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(counted.url, namespace=namespace) as holder, \
                await fc.aio.connect(counted.url, namespace=namespace) as waiter:
            grant = await holder.acquire("orders", timeout=PROMPT)
            watches = (await asyncio.to_thread(rpc_counts, member))["Watch"]
            queued = asyncio.Event()
            task = asyncio.create_task(waiter.acquire("orders", PROMPT, on_queued=queued.set))
            await asyncio.wait_for(queued.wait(), PROMPT)
            deadline = time.monotonic() + PROMPT
            while (await asyncio.to_thread(rpc_counts, member))["Watch"] < watches + 1:  # its stream is open
                assert time.monotonic() < deadline, "the waiter never watched"
                await asyncio.sleep(0.01)  # polling the server's counters: no event tells of it
            before = await asyncio.to_thread(_kv_calls, counted)
            await holder.release(grant)
            taken = await asyncio.wait_for(task, PROMPT)
            assert _delta(before, await asyncio.to_thread(_kv_calls, counted)) == {"DeleteRange": 1}
            assert taken.token > grant.token
            assert (await waiter.describe("orders")).holder == waiter.identity
            await waiter.release(taken)

    asyncio.run(main())
