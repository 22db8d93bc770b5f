"""The lock part of the async conformance suite: the contract of
:mod:`fencing_coord.testing.locks` through ``fencing_coord.aio``, plus the cancellation
rules and "a waiting acquire costs no thread". Mix :class:`AsyncLockConformance` into a
class with an :class:`~fencing_coord.testing.AsyncBackendFixtures` subclass."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ..aio.backend import AsyncLockBackend
from ..aio.signals import wait_lost
from ..errors import InvalidArgument, LockLost, LockTimeout
from ..grant import Grant
from .aio_fixtures import AioCase, aio_test
from .expiry import AT_ONCE, PROMPT

__all__ = ["AsyncLockConformance", "queued_acquire"]


async def queued_acquire(client: AsyncLockBackend, name: str,
                         timeout: float | None = PROMPT) -> asyncio.Task[Grant]:
    """A task acquiring ``name``, returned once it has queued behind the holder."""
    queued = asyncio.Event()
    task = asyncio.create_task(client.acquire(name, timeout, on_queued=queued.set))
    waiting = asyncio.create_task(queued.wait())
    await asyncio.wait([task, waiting], timeout=PROMPT, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    assert queued.is_set(), f"the acquire never queued ({task})"
    return task


async def _cancelled(task: asyncio.Task[Grant]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class AsyncLockConformance:
    """Mixin: the lock contract and its cancellation rules, on ``fencing_coord.aio``."""

    # -- grants and tokens ------------------------------------------------------------

    @aio_test
    async def test_acquire_returns_grant_with_int_token(self, aio: AioCase) -> None:
        backend = await aio.make()
        grant = await backend.acquire("orders", timeout=PROMPT)
        assert isinstance(grant, Grant)
        assert type(grant.token) is int
        assert grant.token >= 0
        assert (grant.name, grant.holder, grant.lost) == ("orders", backend.identity, False)

    @aio_test
    async def test_tokens_strictly_increase_across_clients(self, aio: AioCase) -> None:
        clients = await aio.clients(3)
        tokens = []
        for _ in range(3):
            for client in clients:
                async with client.lock("orders", timeout=PROMPT) as grant:
                    tokens.append(grant.token)
        assert tokens == sorted(set(tokens)), tokens

    @aio_test
    async def test_try_acquire_and_timeouts(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)
        grant = await backend.acquire("orders", timeout=PROMPT)
        assert await other.try_acquire("orders") is None
        with pytest.raises(LockTimeout):
            await other.acquire("orders", timeout=0.2)
        assert await other.try_acquire("payments") is not None, "names are independent locks"
        assert await backend.release(grant) is True
        taken = await other.try_acquire("orders")
        assert taken is not None
        assert taken.token > grant.token

    @aio_test
    async def test_bad_arguments_are_refused(self, aio: AioCase) -> None:
        backend = await aio.make()
        for name in ("", "a/b", "x" * 201):
            with pytest.raises(InvalidArgument):
                await backend.acquire(name, timeout=0)
        with pytest.raises(InvalidArgument):
            await backend.acquire("orders", timeout=-1)

    # -- cancellation ----------------------------------------------------------------------

    @aio_test
    async def test_cancelled_waiter_leaves_no_trace_and_the_next_is_served(self, aio: AioCase) -> None:
        holder, quitter, third = await aio.clients(3)
        grant = await holder.acquire("orders", timeout=PROMPT)
        waiting = await queued_acquire(quitter, "orders")
        successor = await queued_acquire(third, "orders")
        await _cancelled(waiting)
        assert (await holder.describe("orders")).waiters == (third.identity,)
        await holder.release(grant)
        assert (await asyncio.wait_for(successor, PROMPT)).token > grant.token

    @aio_test
    async def test_asyncio_timeout_behaves_like_the_timeout_argument(self, aio: AioCase) -> None:
        holder, quitter, third = await aio.clients(3)
        grant = await holder.acquire("orders", timeout=PROMPT)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await quitter.acquire("orders")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(quitter.acquire("orders"), 0.2)
        assert (await holder.describe("orders")).waiters == ()
        await holder.release(grant)
        assert await third.try_acquire("orders") is not None, "a timed-out waiter still blocks the lock"

    @aio_test
    async def test_cancellation_racing_the_grant_never_strands_the_lock(self, aio: AioCase) -> None:
        """Cancel a waiter at the moment the lock is handed to it, many times: either the
        task got the grant (and releases it) or the lock is free; never held by nobody."""
        holder, waiter, probe = await aio.clients(3)
        for round_ in range(12):
            grant = await holder.acquire("orders", timeout=PROMPT)
            task = await queued_acquire(waiter, "orders")
            await holder.release(grant)
            for _ in range(round_ % 4):
                await asyncio.sleep(0)  # cancel at a different step of the handoff each time
            task.cancel()
            try:
                got = await task
            except asyncio.CancelledError:
                got = None
            if got is not None:
                assert await waiter.release(got) is True
            taken = await probe.acquire("orders", timeout=PROMPT)
            await probe.release(taken)

    @aio_test
    async def test_release_completes_in_a_cancelled_task(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)
        entered = asyncio.Event()

        async def hold() -> None:
            async with backend.lock("orders", timeout=PROMPT):
                entered.set()
                await asyncio.sleep(PROMPT)

        task = asyncio.create_task(hold())
        await entered.wait()
        task.cancel()
        task.cancel()  # a second cancellation must not cut the release short
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await other.try_acquire("orders") is not None, "the cancelled holder's release did not complete"

    @aio_test
    async def test_waiting_acquires_cost_no_thread(self, aio: AioCase) -> None:
        holder, waiters = await aio.clients(2)
        grant = await holder.acquire("orders", timeout=PROMPT)
        before = threading.active_count()
        tasks = [await queued_acquire(waiters, "orders") for _ in range(20)]
        # (a client library may start a helper thread lazily; a thread per waiter is 20)
        assert threading.active_count() <= before + 2, "waiting acquires started threads"
        await holder.release(grant)
        for task in tasks:
            await waiters.release(await asyncio.wait_for(task, PROMPT))

    # -- release, renew, reentrancy ---------------------------------------------------------

    @aio_test
    async def test_release_and_renew(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)
        grant = await backend.acquire("orders", timeout=PROMPT)
        with pytest.raises(InvalidArgument):
            await other.release(grant)
        with pytest.raises(InvalidArgument):
            await other.renew(grant)
        renewed = await backend.renew(grant)
        assert renewed.token == grant.token
        assert not renewed.lost
        assert (await other.describe("orders")).token == grant.token
        fired = threading.Event()
        grant.on_lost(lambda g: fired.set())
        assert await backend.release(grant) is True
        assert await backend.release(grant) is False
        with pytest.raises(LockLost):
            await backend.renew(grant)
        assert grant.released
        assert not grant.lost
        assert not fired.is_set()

    @aio_test
    async def test_reentrancy_is_per_task(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)
        async with backend.lock("orders", timeout=PROMPT) as outer:
            async with backend.lock("orders", timeout=PROMPT) as inner:
                assert inner is outer
            assert await other.try_acquire("orders") is None, "the inner release gave the outer hold up"
            sibling = await queued_acquire(backend, "orders")  # another task is a contender
            assert not sibling.done()
        second = await asyncio.wait_for(sibling, PROMPT)
        assert second.token > outer.token
        await backend.release(second)

    # -- fairness and exclusion ------------------------------------------------------------

    @aio_test
    async def test_waiters_are_served_in_arrival_order(self, aio: AioCase) -> None:
        holder, *waiters = await aio.clients(4)
        grant = await holder.acquire("orders", timeout=PROMPT)
        tasks = [await queued_acquire(client, "orders") for client in waiters]
        state = await holder.describe("orders")
        assert (state.holder, state.token, state.waiters) == (holder.identity, grant.token,
                                                              tuple(c.identity for c in waiters))
        await holder.release(grant)
        for index, (client, task) in enumerate(zip(waiters, tasks, strict=True)):
            got = await asyncio.wait_for(task, PROMPT)
            assert got.holder == client.identity
            assert all(not t.done() for t in tasks[index + 1:]), "a later waiter was served early"
            await client.release(got)

    @aio_test
    async def test_mutual_exclusion_under_contention(self, aio: AioCase) -> None:
        clients = await aio.clients(3)
        inside: list[int] = []
        tokens: list[int] = []

        async def work(client: AsyncLockBackend) -> None:
            for _ in range(4):
                async with client.lock("orders", timeout=PROMPT) as grant:
                    inside.append(grant.token)
                    assert len(inside) == 1, "two holders at once"
                    tokens.append(grant.token)
                    await asyncio.sleep(0)
                    inside.remove(grant.token)

        await asyncio.gather(*(work(c) for c in clients for _ in range(2)))
        assert len(tokens) == 24
        assert tokens == sorted(set(tokens))

    @aio_test
    async def test_lock_releases_on_exception_and_locks_lists(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)
        async def fail_inside() -> None:
            async with backend.lock("orders", timeout=PROMPT):
                assert await backend.locks() == ["orders"]
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await fail_inside()
        assert await other.try_acquire("orders") is not None

    @aio_test
    async def test_close_releases_and_withdraws(self, aio: AioCase) -> None:
        holder, closing, third = await aio.clients(3)
        grant = await holder.acquire("orders", timeout=PROMPT)
        await closing.acquire("payments", timeout=PROMPT)
        waiting = await queued_acquire(closing, "orders")
        await closing.close()
        with pytest.raises(InvalidArgument, match="closed"):
            await asyncio.wait_for(waiting, PROMPT)
        with pytest.raises(InvalidArgument):
            await closing.acquire("orders", timeout=0)
        assert await third.try_acquire("payments") is not None
        await holder.release(grant)
        assert await third.try_acquire("orders") is not None, "a closed client's waiter still blocks the lock"

    # -- expiry ------------------------------------------------------------------------------

    @aio_test
    async def test_expired_grant_is_lost_once_and_the_next_gets_a_larger_token(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)
        old = await backend.acquire("orders", timeout=PROMPT)
        calls: list[Grant] = []
        old.on_lost(calls.append)
        await aio.expire(backend)
        new = await other.acquire("orders", timeout=PROMPT)
        assert new.token > old.token
        assert await wait_lost(old, PROMPT)
        with pytest.raises(LockLost):
            await backend.renew(old)
        assert await backend.release(old) is False
        assert old.lost
        assert calls == [old]
        again = await backend.acquire("payments", timeout=PROMPT)
        assert not again.lost, "the client did not recover from its expired session"

    @aio_test
    async def test_release_of_a_lost_grant_is_false_at_once(self, aio: AioCase) -> None:
        """As the blocking suite's: a grant known lost is released without asking the
        service (False, at once, final), and the successor is untouched."""
        backend, other = await aio.clients(2)
        grant = await backend.acquire("orders", timeout=PROMPT)
        fired: list[Grant] = []
        grant.on_lost(fired.append)
        await aio.expire(backend)
        taken = await other.acquire("orders", timeout=PROMPT)
        assert await wait_lost(grant, PROMPT)
        started = time.monotonic()
        assert await backend.release(grant) is False
        took = time.monotonic() - started
        assert took < AT_ONCE, f"releasing a grant known lost took {took:.2f} s"
        assert grant.released
        assert await backend.release(grant) is False
        assert fired == [grant]
        assert (await other.describe("orders")).token == taken.token, "the lost grant's release touched the successor"

    # -- a closed backend ---------------------------------------------------------------------

    @aio_test
    async def test_calls_after_close_are_invalid_argument(self, aio: AioCase) -> None:
        backend = await aio.make()
        grant = await backend.acquire("orders", timeout=PROMPT)
        await backend.close()
        failures = []
        for what, call in (("acquire", lambda: backend.acquire("orders", timeout=0)),
                           ("try_acquire", lambda: backend.try_acquire("orders")),
                           ("describe", lambda: backend.describe("orders")),
                           ("locks", lambda: backend.locks())):
            try:
                await call()
            except InvalidArgument as exc:
                if "closed" not in str(exc):
                    failures.append(f"{what}: InvalidArgument without 'closed': {exc}")
            except Exception as exc:  # reported below, with every other call's outcome
                failures.append(f"{what}: {type(exc).__name__}: {exc}")
            else:
                failures.append(f"{what}: no exception")
        assert not failures, "calls after close() must raise InvalidArgument ('closed'):\n" + "\n".join(failures)
        with pytest.raises(LockLost):
            await backend.renew(grant)
        assert await backend.release(grant) is False
