"""The asyncio etcd backend watches its held keys (one stream per backend, the rules of
:mod:`fencing_coord.backends.etcd.heldbook`, shared with the blocking backend): keepalive
rounds read no held key, whatever their number, and a held key deleted out of band or a
revoked lease is reported within a round trip, not at the next keepalive round."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import fencing_coord as fc
from fencing_coord.servers.etcd import EtcdMember
from fencing_coord.testing.aio_fixtures import run_guarded

from .conftest import EtcdTarget, revoke_lease, rpc_counts

pytestmark = pytest.mark.etcd

PROMPT = 30.0


def _delete_prefix(target: EtcdTarget, prefix: str) -> None:
    client = target.client()
    try:
        client.delete_prefix(prefix)  # an operator breaks one lock
    finally:
        client.close()


@pytest.mark.parametrize("held", [10, 150])
def test_keepalive_rounds_read_no_held_key(etcd_single: EtcdTarget, member: EtcdMember, held: int) -> None:
    """With ``held`` locks held, three keepalive rounds send three keepalives and no KV
    request: the same whatever the number of keys (they used to read every held key each
    round, one Txn per 128 keys)."""
    async def main() -> None:
        namespace = f"hk-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, ttl=3, namespace=namespace) as backend:
            grants = [await backend.acquire(f"lock-{i}", timeout=PROMPT) for i in range(held)]
            before = await asyncio.to_thread(rpc_counts, member)
            deadline = time.monotonic() + PROMPT
            while (now := await asyncio.to_thread(rpc_counts, member))["LeaseKeepAlive"] < before["LeaseKeepAlive"] + 3:
                assert time.monotonic() < deadline, "no keepalive rounds"
                await asyncio.sleep(0.05)  # polling the server's counters: no event tells of a round
            after = await asyncio.to_thread(rpc_counts, member)
            assert {m: after[m] - before[m] for m in ("Txn", "Range")} == {"Txn": 0, "Range": 0}
            assert now["LeaseKeepAlive"] - before["LeaseKeepAlive"] == 3
            assert not any(grant.lost for grant in grants)

    run_guarded(main)


def test_a_deleted_key_is_reported_lost_in_a_round_trip(etcd_single: EtcdTarget) -> None:
    """At ttl 30 the keepalive rounds come every 10 s: the report within 5 s can only
    come from the watch. The other held key is not touched."""

    async def main() -> None:
        namespace = f"hk-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, ttl=30, namespace=namespace) as backend:
            grant = await backend.acquire("orders", timeout=PROMPT)
            kept = await backend.acquire("payments", timeout=PROMPT)
            await asyncio.to_thread(_delete_prefix, etcd_single, backend.lock_prefix("orders"))  # type: ignore[attr-defined]
            assert await fc.aio.wait_lost(grant, 5.0), "the loss was not reported by the watch"
            assert grant.lost_reason == "lock key deleted"
            assert not kept.lost
            assert await backend.renew(kept) is kept
            assert await backend.release(grant) is False
            assert await backend.release(kept) is True

    run_guarded(main)


def test_a_revoked_lease_is_reported_as_such_by_the_watch(etcd_single: EtcdTarget) -> None:
    async def main() -> None:
        namespace = f"hk-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, ttl=30, namespace=namespace) as backend:
            grant = await backend.acquire("orders", timeout=PROMPT)
            lease_id = backend.lease_id  # type: ignore[attr-defined]
            await asyncio.to_thread(revoke_lease, etcd_single, lease_id)
            assert await fc.aio.wait_lost(grant, 5.0), "the loss was not reported by the watch"
            assert grant.lost_reason == "lease revoked"

    run_guarded(main)


def test_grants_released_at_once_cost_no_watch(etcd_single: EtcdTarget, member: EtcdMember) -> None:
    """The stream is opened for a grant still held when the loop next runs its callbacks:
    locks released at once (no await between) start no task and open no stream; one
    held across an await is watched."""
    async def main() -> None:
        namespace = f"hk-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, ttl=30, namespace=namespace) as backend:
            held_keys = backend._held_keys  # type: ignore[attr-defined]
            before = await asyncio.to_thread(rpc_counts, member)
            for _ in range(20):
                assert await backend.release(await backend.acquire("orders", timeout=PROMPT)) is True
            await asyncio.sleep(0)  # the callbacks scheduled by the last grant run
            assert held_keys._task is None
            assert (await asyncio.to_thread(rpc_counts, member))["Watch"] == before["Watch"]
            grant = await backend.acquire("orders", timeout=PROMPT)
            await asyncio.sleep(0)
            assert held_keys._task is not None
            await asyncio.to_thread(_delete_prefix, etcd_single, backend.lock_prefix("orders"))
            assert await fc.aio.wait_lost(grant, 5.0), "the loss was not reported by the watch"

    run_guarded(main)


def test_a_stream_cut_is_opened_again_and_a_delete_meanwhile_is_reported(etcd_single: EtcdTarget) -> None:
    """The stream cancelled under the task (as when the connection moved to another
    member, or by grpc) is opened again: a key deleted while it was down is reported
    (read once when its watch is back), and the other held key is kept."""

    async def main() -> None:
        namespace = f"hk-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, ttl=30, namespace=namespace) as backend:
            held_keys = backend._held_keys  # type: ignore[attr-defined]
            grant = await backend.acquire("orders", timeout=PROMPT)
            kept = await backend.acquire("payments", timeout=PROMPT)
            for _ in range(100):  # loop passes, not time: the task opens the stream in its first step
                if held_keys._call is not None:
                    break
                await asyncio.sleep(0)
            assert held_keys._call is not None, "the stream was not opened"
            held_keys._call.cancel()
            await asyncio.to_thread(_delete_prefix, etcd_single, backend.lock_prefix("orders"))  # type: ignore[attr-defined]
            assert await fc.aio.wait_lost(grant, 5.0), "the delete while the stream was down was not reported"
            assert grant.lost_reason == "lock key deleted"
            assert not kept.lost
            assert await backend.renew(kept) is kept

    run_guarded(main)
