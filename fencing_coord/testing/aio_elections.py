"""The election part of the async conformance suite: campaign, leader, ``observe`` as
an async iterator, proclaim, resign and run through ``fencing_coord.aio``."""

from __future__ import annotations

import asyncio

import pytest

from ..aio.backend import AsyncLockBackend
from ..aio.election import AsyncLeadershipEvent, AsyncTerm, LeaderStream
from ..errors import InvalidArgument, InvalidArgumentType, LockLost, LockTimeout
from ..gate import FencedResource
from ..records import Leader
from ..stores.memory import MemoryStore
from .aio_fixtures import AioCase, aio_test
from .expiry import PROMPT

__all__ = ["AsyncElectionConformance"]


async def _next(leaders: LeaderStream) -> Leader | None:
    return await asyncio.wait_for(anext(leaders), PROMPT)


async def _queued_campaign(client: AsyncLockBackend, value: bytes = b"") -> asyncio.Task[AsyncTerm]:
    queued = asyncio.Event()
    task = asyncio.create_task(client.election("scheduler").campaign(PROMPT, value, on_queued=queued.set))
    await asyncio.wait_for(queued.wait(), PROMPT)
    return task


class AsyncElectionConformance:
    """Mixin: leader election on ``fencing_coord.aio``."""

    @aio_test
    async def test_campaign_leads_and_leader_reports_it(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)
        assert await other.election("scheduler").leader() is None
        term = await backend.election("scheduler").campaign(timeout=PROMPT, value=b"http://a:8080")
        assert await other.election("scheduler").leader() == Leader(backend.identity, b"http://a:8080", term.token)
        with pytest.raises(InvalidArgumentType):
            await other.election("scheduler").campaign(timeout=0, value="text")  # type: ignore[arg-type]
        with pytest.raises(LockTimeout):
            await other.election("scheduler").campaign(timeout=0.2)
        assert await term.resign() is True
        assert await term.resign() is False
        assert await other.election("scheduler").leader() is None

    @aio_test
    async def test_resign_hands_over_in_arrival_order_with_larger_tokens(self, aio: AioCase) -> None:
        leader, *candidates = await aio.clients(3)
        term = await leader.election("scheduler").campaign(timeout=PROMPT)
        tasks = [await _queued_campaign(client) for client in candidates]
        await term.resign()
        tokens = [term.token]
        for client, task in zip(candidates, tasks, strict=True):
            elected = await asyncio.wait_for(task, PROMPT)
            assert elected.grant.holder == client.identity
            tokens.append(elected.token)
            await elected.resign()
        assert tokens == sorted(set(tokens)), tokens

    @aio_test
    async def test_cancelled_candidate_leaves_no_trace(self, aio: AioCase) -> None:
        leader, quitter, third = await aio.clients(3)
        term = await leader.election("scheduler").campaign(timeout=PROMPT)
        task = await _queued_campaign(quitter)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await term.resign()
        assert (await third.election("scheduler").campaign(timeout=0)).token > term.token

    @aio_test
    async def test_proclaim_changes_the_value_not_the_token(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)
        async with await backend.election("scheduler").campaign(timeout=PROMPT, value=b"v1") as term:
            await term.proclaim(b"v2")
            assert await other.election("scheduler").leader() == Leader(backend.identity, b"v2", term.token)
        assert term.resigned
        with pytest.raises(LockLost):
            await term.proclaim(b"v3")

    @aio_test
    async def test_observe_sees_every_change_in_order(self, aio: AioCase) -> None:
        clients = await aio.clients(2)
        watcher = await aio.make()
        async with watcher.election("scheduler").observe() as leaders:
            assert await _next(leaders) is None
            seen = []
            for client in clients:
                term = await client.election("scheduler").campaign(timeout=PROMPT, value=client.identity.encode())
                expected = Leader(client.identity, client.identity.encode(), term.token)
                while (leader := await _next(leaders)) != expected:
                    assert leader is None or leader.token <= expected.token
                seen.append(leader)
                await term.proclaim(b"new value")
                while (leader := await _next(leaders)) != Leader(client.identity, b"new value", term.token):
                    pass
                await term.resign()
                while (leader := await _next(leaders)) is not None:
                    pass
        tokens = [leader.token for leader in seen if leader is not None]
        assert tokens == sorted(set(tokens))
        with pytest.raises(StopAsyncIteration):
            await anext(leaders)

    @aio_test
    async def test_run_passes_the_term_and_resigns(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)

        async def job(event: AsyncLeadershipEvent) -> int:
            assert not event.is_set()
            assert await other.election("scheduler").leader() == Leader(backend.identity, b"", event.term.token)
            return event.term.token

        assert isinstance(await backend.election("scheduler").run(job, timeout=PROMPT), int)
        assert await other.election("scheduler").leader() is None

    @aio_test
    async def test_paused_leader_loses_its_term_and_its_write_is_refused(self, aio: AioCase) -> None:
        backend, other = await aio.clients(2)
        resource = FencedResource(MemoryStore())

        async def job(event: AsyncLeadershipEvent) -> bool:
            assert resource.write("jobs", "k", b"old", token=event.term.token).accepted
            await aio.expire(backend)  # the leader is paused past its TTL
            successor = await other.election("scheduler").campaign(timeout=PROMPT)
            assert successor.token > event.term.token
            assert resource.write("jobs", "k", b"new", token=successor.token).accepted
            await asyncio.wait_for(event.wait(), PROMPT)
            return resource.write("jobs", "k", b"late", token=event.term.token).accepted

        assert await backend.election("scheduler").run(job, timeout=PROMPT) is False
        assert resource.read("jobs", "k") == b"new"

    @aio_test
    async def test_an_election_of_a_closed_backend_is_invalid_argument(self, aio: AioCase) -> None:
        backend = await aio.make()
        election = backend.election("scheduler")
        term = await election.campaign(timeout=PROMPT)
        await backend.close()
        with pytest.raises(InvalidArgument, match="closed"):
            await election.leader()
        with pytest.raises(InvalidArgument, match="closed"):
            election.observe()
        with pytest.raises(InvalidArgument, match="closed"):
            await election.campaign(timeout=0)
        assert term.resigned
        with pytest.raises(LockLost):
            await term.proclaim(b"late")
