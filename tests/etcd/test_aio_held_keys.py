"""The asyncio etcd backend watches its held keys (one stream per backend, the rules of
:mod:`fencing_coord.backends.etcd.heldbook`, shared with the blocking backend): keepalive
rounds read no held key, whatever their number, and a held key deleted out of band or a
revoked lease is reported within a round trip, not at the next keepalive round. As in
the blocking backend, a key is watched once its grant has been held ``watch_after``
(0.1 s): a lock released before costs the stream nothing, even while it is open."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.servers.etcd import EtcdMember
from fencing_coord.testing.aio_fixtures import run_guarded

from ..spies import recorded
from .conftest import EtcdTarget, revoke_lease, rpc_counts, watch_requests

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


async def _lose_a_grant(backend: fc.aio.AsyncLockBackend, target: EtcdTarget, name: str) -> None:
    """Acquire ``name``, delete its key out of band and await the report, which comes
    from the grant's watch: the stream is open then, and etcd has received every
    request sent on it before that watch's create."""
    grant = await backend.acquire(name, timeout=PROMPT)
    await asyncio.to_thread(_delete_prefix, target, backend.lock_prefix(name))  # type: ignore[attr-defined]
    assert await fc.aio.wait_lost(grant, PROMPT), "the loss was not reported by the watch"
    assert grant.lost_reason == "lock key deleted"


def test_grants_released_at_once_on_an_open_stream_send_no_watch_request(etcd_single: EtcdTarget,
                                                                          member: EtcdMember) -> None:
    """20 grants released at once, on an open stream, cost no watch create or cancel
    (each cost one of each before: 40 requests, their answers and about 7 loop passes)."""

    async def main() -> None:
        namespace = f"hk-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, ttl=30, namespace=namespace) as backend:
            await _lose_a_grant(backend, etcd_single, "first")  # the stream is open
            before = await asyncio.to_thread(watch_requests, member)
            for _ in range(20):
                assert await backend.release(await backend.acquire("orders", timeout=PROMPT)) is True
            await _lose_a_grant(backend, etcd_single, "last")  # every request of the 20 has arrived
            received = await asyncio.to_thread(watch_requests, member) - before
            # "last"'s create, and possibly the cancels of "first" and "last": 1 to 3. Two
            # more: room for one of the 20 grants stalled past 0.1 s on a loaded machine.
            assert received <= 5, f"{received} watch requests for 20 grants released at once"

    run_guarded(main)


def _passes_per_grant(backend: fc.aio.AsyncLockBackend, grants: int) -> Any:
    """Event-loop passes of ``grants`` uncontended acquire+release, awaited."""

    async def count() -> int:
        loop = asyncio.get_running_loop()
        passes = 0
        run_once = loop._run_once  # type: ignore[attr-defined]

        def counted() -> None:
            nonlocal passes
            passes += 1
            run_once()

        loop._run_once = counted  # type: ignore[attr-defined]
        try:
            for _ in range(grants):
                assert await backend.release(await backend.acquire("orders", timeout=PROMPT)) is True
        finally:
            del loop._run_once  # type: ignore[attr-defined]
        return passes

    return count()


def test_an_open_stream_adds_no_loop_pass_to_a_short_hold(etcd_single: EtcdTarget) -> None:
    """The loop passes of an uncontended acquire+release are those of grpc.aio's two
    unary calls whether the held keys' stream is open or not (about 15 with it open
    before, against 8), and the deferred watches are timed by about one timer of the
    loop per ``watch_after``, not one per grant."""

    async def main() -> None:
        namespace = f"hk-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, ttl=30, namespace=namespace) as backend, \
                await fc.aio.connect(etcd_single.url, ttl=30, namespace=namespace) as streaming:
            await backend.release(await backend.acquire("orders", timeout=PROMPT))
            await _lose_a_grant(streaming, etcd_single, "first")  # its stream is open
            await streaming.release(await streaming.acquire("orders", timeout=PROMPT))
            without = await _passes_per_grant(backend, 20)
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            with recorded(loop, "call_at") as timers:
                opened = await _passes_per_grant(streaming, 20)
            elapsed = time.monotonic() - started
            assert backend._held_keys._call is None  # type: ignore[attr-defined]
            assert streaming._held_keys._call is not None  # type: ignore[attr-defined]
            # One more pass per grant at most: a timer firing, or grpc's answers split.
            assert opened <= without + 20, f"{opened} loop passes with the stream open, {without} without"
            watch_after = streaming._held_keys.watch_after  # type: ignore[attr-defined]
            assert len(timers) <= elapsed / watch_after + 4, f"{len(timers)} timers for 20 grants"

    run_guarded(main)


def test_a_key_deleted_before_its_watch_is_reported(etcd_single: EtcdTarget, member: EtcdMember) -> None:
    """Deleted before the deferred watch was created: the watch, which starts at the
    revision after the grant's, replays the DELETE."""

    async def main() -> None:
        namespace = f"hk-{uuid.uuid4().hex[:10]}"
        async with await fc.aio.connect(etcd_single.url, ttl=30, namespace=namespace) as backend:
            await _lose_a_grant(backend, etcd_single, "first")  # the stream is open
            # A delay the out-of-band delete surely falls in, even on a loaded machine.
            backend._held_keys.watch_after = 2.0  # type: ignore[attr-defined]
            before = await asyncio.to_thread(watch_requests, member)
            grant = await backend.acquire("orders", timeout=PROMPT)
            granted = time.monotonic()
            await asyncio.to_thread(_delete_prefix, etcd_single, backend.lock_prefix("orders"))  # type: ignore[attr-defined]
            assert time.monotonic() - granted < 2.0, "the delete took longer than the delay"
            assert await asyncio.to_thread(watch_requests, member) == before, "the key was watched before the delete"
            assert await fc.aio.wait_lost(grant, PROMPT), "a deletion before the watch began was not reported"
            assert grant.lost_reason == "lock key deleted"
            assert time.monotonic() - granted < 2.0 + 5.0
            assert await asyncio.to_thread(watch_requests, member) > before  # by the watch, made after the delay

    run_guarded(main)
