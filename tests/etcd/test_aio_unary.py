"""The asyncio etcd connection's unary requests (:mod:`fencing_coord.backends.etcd.aio_unary`):
awaited in the calling task, with no task of grpc.aio's; answered, failed, cancelled and
ended by ``close()`` as grpc.aio's own callables are; and, without the grpc internals
they use, sent through grpc.aio's callables."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from etcd3 import etcdrpc

import fencing_coord as fc
from fencing_coord.backends.etcd import aio_unary
from fencing_coord.backends.etcd.aio_connection import AsyncConnection
from fencing_coord.backends.etcd.aio_unary import ToEnd
from fencing_coord.backends.etcd.connection import connection_for
from fencing_coord.backends.etcd.wire import LeaseNotFound
from fencing_coord.config import parse_url
from fencing_coord.errors import FencingCoordError, InvalidArgument
from fencing_coord.testing.aio_fixtures import run_guarded

from ..blackhole import BlackHole
from .conftest import EtcdTarget

pytestmark = pytest.mark.etcd

PROMPT = 30.0


class _Tasks:
    """A task factory that counts every task made (grpc.aio's included)."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        self.made.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kwargs)

    @contextmanager
    def counting(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(self)
        try:
            yield
        finally:
            loop.set_task_factory(None)


async def _acquire_release_tasks(url: str, rounds: int = 3) -> list[str]:
    """The tasks made by ``rounds`` uncontended acquire+release on a new backend."""
    tasks = _Tasks()
    async with await fc.aio.connect(url, namespace=f"un-{uuid.uuid4().hex[:10]}") as backend:
        await backend.release(await backend.acquire("warm-up", timeout=PROMPT))
        with tasks.counting():
            for _ in range(rounds):
                assert await backend.release(await backend.acquire("orders", timeout=PROMPT)) is True
    return tasks.made


def test_an_uncontended_acquire_and_release_make_no_task_at_all(etcd_single: EtcdTarget) -> None:
    """Not even grpc.aio's one per unary call (two per acquire+release before): each is
    a loop pass and a callback more per request."""
    if not aio_unary.DIRECT:
        pytest.skip(f"grpcio {grpc.__version__} is not among the releases the direct path was tested with")

    async def main() -> None:
        made = await _acquire_release_tasks(etcd_single.url)
        assert made == [], f"the uncontended path made tasks: {made}"

    run_guarded(main)


def test_without_grpcs_internals_requests_go_through_grpc_aio(etcd_single: EtcdTarget,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the grpc internals are missing, the same calls work through grpc.aio's
    callables (and their tasks)."""
    monkeypatch.setattr(aio_unary, "DIRECT", False)

    async def main() -> None:
        made = await _acquire_release_tasks(etcd_single.url)
        assert len(made) == 6, f"expected grpc.aio's one task per request: {made}"

    run_guarded(main)


@pytest.mark.parametrize(("version", "direct"), [("1.85.3", True), ("1.84.0", True), ("1.86.0", False),
                                                  ("1.82.1", False), ("2.0.0", False), ("1.85.0rc1", True),
                                                  ("dev", False)])
def test_the_direct_path_is_taken_only_on_tested_grpc_releases(version: str, direct: bool) -> None:
    """grpc's internals can change in any release: a release it was not tested with
    (newer ones too) goes through grpc.aio's callables."""
    assert aio_unary.tested_release(version) is direct


def test_a_refused_request_is_mapped_from_the_servers_status(etcd_single: EtcdTarget) -> None:
    """etcd's refusals keep their status code and text: a put on a lease etcd does not
    know is LeaseNotFound, an empty key the request's error with etcd's words."""

    async def main() -> None:
        async with await fc.aio.connect(etcd_single.url, namespace=f"un-{uuid.uuid4().hex[:10]}") as backend:
            conn = backend._conn  # type: ignore[attr-defined]
            with pytest.raises(LeaseNotFound, match="lease not found"):
                await conn.call("KV", "Put", etcdrpc.PutRequest(key=b"/un/x", value=b"v", lease=0x7E57))
            with pytest.raises(FencingCoordError, match="key is not provided"):
                await conn.call("KV", "Range", etcdrpc.RangeRequest(key=b""))
            with pytest.raises(FencingCoordError, match="key is not provided"):
                await conn.call_to_end("KV", "DeleteRange", etcdrpc.DeleteRangeRequest(key=b""))

    run_guarded(main)


def test_close_ends_a_request_in_flight() -> None:
    """As grpc.aio's channels cancel their calls at close: a request in flight (to a
    server that never answers) ends at once with InvalidArgument ("closed"), not at its
    timeout; cancelling its task cancels it."""

    async def main() -> None:
        with BlackHole() as hole:
            settings = connection_for(parse_url(f"etcd://{hole.endpoint}"), 30.0, None, None, None)
            for method in ("call", "call_to_end"):
                conn = AsyncConnection(settings)
                send = getattr(conn, method)
                in_flight = asyncio.ensure_future(send("KV", "Range", etcdrpc.RangeRequest(key=b"x")))
                await asyncio.sleep(0.05)
                assert not in_flight.done(), method
                await conn.close()
                with pytest.raises(InvalidArgument, match="closed"):
                    await asyncio.wait_for(in_flight, 5.0)
            conn = AsyncConnection(settings)
            in_flight = asyncio.ensure_future(conn.call("KV", "Range", etcdrpc.RangeRequest(key=b"x")))
            await asyncio.sleep(0.05)
            in_flight.cancel()  # the call is cancelled with its task
            with pytest.raises(asyncio.CancelledError):
                await in_flight
            assert not conn._in_flight
            await conn.close()

    run_guarded(main)


# -- ToEnd, on coroutines of its own -----------------------------------------------------------


def test_to_end_returns_the_result_and_absorbs_cancellations() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str] = loop.create_future()
        steps: list[str] = []

        async def work() -> str:
            await asyncio.sleep(0)  # a bare yield
            steps.append("waiting")
            result = await answer
            steps.append("answered")
            return result

        to_end = ToEnd(work())

        async def caller() -> tuple[str, asyncio.CancelledError | None]:
            return await to_end, to_end.cancelled

        task = asyncio.ensure_future(caller())
        for _ in range(3):
            await asyncio.sleep(0)
        assert steps == ["waiting"]
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        assert not task.done()
        assert not answer.cancelled()
        answer.set_result("deleted")
        result, cancelled = await task
        assert (result, steps) == ("deleted", ["waiting", "answered"])
        assert isinstance(cancelled, asyncio.CancelledError)

    asyncio.run(main())


def test_to_end_raises_the_coroutines_error_and_keeps_the_cancellation() -> None:
    async def main() -> None:
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def work() -> None:
            await answer
            raise ValueError("refused")

        to_end = ToEnd(work())
        task = asyncio.ensure_future(_await(to_end))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        answer.set_result(None)
        with pytest.raises(ValueError, match="refused"):
            await task
        assert isinstance(to_end.cancelled, asyncio.CancelledError)

    asyncio.run(main())


async def _await(awaitable: ToEnd) -> Any:
    return await awaitable


def test_to_end_absorbs_a_cancellation_at_a_bare_yield() -> None:
    async def main() -> None:
        steps: list[int] = []

        async def work() -> str:
            for step in range(3):
                steps.append(step)
                await asyncio.sleep(0)
            return "done"

        to_end = ToEnd(work())
        task = asyncio.ensure_future(_await(to_end))
        await asyncio.sleep(0)
        assert steps == [0]
        task.cancel()
        assert await task == "done"
        assert steps == [0, 1, 2]
        assert isinstance(to_end.cancelled, asyncio.CancelledError)

    asyncio.run(main())
