"""The fixtures of the async conformance suite (``fencing_coord.aio``), for any backend.

A backend opts in with one class, as for the blocking suite::

    from fencing_coord.testing import AsyncBackendFixtures, AsyncLockConformance

    class TestMyAsyncBackend(AsyncLockConformance, AsyncBackendFixtures):
        backend_url = "mine://127.0.0.1:9999"

        async def expire(self, backend):   # optional: end a session on the server now
            ...

Each test runs in its own event loop (``asyncio.run``, no pytest plugin needed) in
**debug mode**, and fails when any callback took longer than ``slow_callback_seconds``
(50 ms): asyncio reports such a callback ("Executing <Handle ...> took 0.2 seconds"),
and a log handler turns the report into a failure. A backend that blocks its event loop
cannot pass. Tests take the ``aio`` fixture, an :class:`AioCase`, and are written as
``@aio_test async def test_x(self, aio): ...``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import pytest

from ..aio.backend import AsyncLockBackend
from ..aio.config import backend_class, connect
from ..errors import NotSupported
from ..url import parse_url
from .fixtures import TEST_URL_ENV, BackendFixtures

__all__ = ["AioCase", "AsyncBackendFixtures", "SlowCallbacks", "aio_test", "run_guarded"]

S = TypeVar("S")


class SlowCallbacks(logging.Handler):
    """Collects asyncio's debug-mode reports of callbacks that blocked the loop."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing") and " took " in message:
            self.reports.append(message)


def run_guarded(main: Callable[[], Awaitable[None]], limit: float = 0.05, runs: int = 3) -> None:
    """Run ``main()`` in a new event loop in debug mode; fail (pytest) when a callback
    took longer than ``limit`` seconds.

    Wall-clock time also counts the moments the OS gave the CPU to another process: on a
    loaded machine a callback that does not block can still be reported. So a test
    whose only fault is a slow callback runs again, up to ``runs`` times in all, and
    fails only if every run reports one (a callback that blocks does so every time)."""
    reports: list[str] = []
    for _ in range(runs):
        slow = SlowCallbacks()
        asyncio_log = logging.getLogger("asyncio")
        asyncio_log.addHandler(slow)
        try:
            asyncio.run(_limited(main(), limit), debug=True)
        finally:
            asyncio_log.removeHandler(slow)
        if not slow.reports:
            return
        reports += slow.reports
    pytest.fail(f"the event loop was blocked (a callback took over {limit} s) in every run:\n" + "\n".join(reports),
                pytrace=False)


async def _limited(main: Awaitable[None], limit: float) -> None:
    asyncio.get_running_loop().slow_callback_duration = limit
    await main


class AioCase:
    """What one async conformance test gets: its namespace, clients made in its loop
    (closed after it), and ``expire``."""

    def __init__(self, fixtures: AsyncBackendFixtures, namespace: str) -> None:
        self.fixtures = fixtures
        self.namespace = namespace
        self.made: list[AsyncLockBackend] = []

    async def make(self, **options: Any) -> AsyncLockBackend:
        """A new independent client (its own session) in this test's namespace."""
        options.setdefault("namespace", self.namespace)
        backend = await self.fixtures.connect(**options)
        self.made.append(backend)
        return backend

    async def clients(self, count: int, **options: Any) -> list[AsyncLockBackend]:
        """``count`` clients, made one after the other (each connect is its own step)."""
        return [await self.make(**options) for _ in range(count)]

    async def expire(self, backend: AsyncLockBackend) -> None:
        """End ``backend``'s lease/session on the server now; the test is skipped when
        the fixtures cannot."""
        try:
            await self.fixtures.expire(backend)
        except (NotSupported, NotImplementedError) as exc:
            pytest.skip(f"{type(self.fixtures).__name__}.expire() cannot end a session: {exc}")

    def run(self, test: Callable[[], Awaitable[None]]) -> None:
        """Run ``test()`` in a new debug-mode loop, with :func:`run_guarded`."""

        def attempt() -> Awaitable[None]:
            self.made = []
            return self._main(test())

        run_guarded(attempt, self.fixtures.slow_callback_seconds, self.fixtures.slow_callback_runs)

    async def _main(self, test: Awaitable[None]) -> None:
        try:
            await test
        finally:
            for backend in self.made:
                await backend.close()


class AsyncBackendFixtures:
    """Provides fresh async clients of one backend in a per-test namespace."""

    backend_url: str | None = None
    #: Lease/session TTL for the suite's clients, seconds.
    ttl: ClassVar[float] = 5.0
    #: A callback of the event loop taking longer than this fails the test (seconds).
    slow_callback_seconds: ClassVar[float] = 0.05
    #: How many runs a test whose only fault is a slow callback gets (see AioCase.run).
    slow_callback_runs: ClassVar[int] = 3

    def url(self) -> str:
        url = self.backend_url or BackendFixtures.default_url
        if url is None:
            pytest.fail(f"{type(self).__name__} has no backend URL: pass --fencing-coord-url URL or set "
                        f"${TEST_URL_ENV}, or set backend_url on the class, or override connect()", pytrace=False)
        return url

    async def connect(self, **options: Any) -> AsyncLockBackend:
        """A new client (its own session); ``options`` include ``namespace``."""
        options.setdefault("ttl", self.ttl)
        return await connect(self.url(), **options)

    async def expire(self, backend: AsyncLockBackend) -> None:
        """End ``backend``'s lease/session on the server side now (as if its holder had
        been paused past its TTL), without sleeping for the TTL."""
        raise NotSupported(f"{type(self).__name__} cannot expire a session on demand")

    @pytest.fixture
    def aio(self) -> AioCase:
        """An :class:`AioCase` in a namespace no other test uses."""
        if self.backend_url is not None or BackendFixtures.default_url is not None:
            # Import the backend's client library now, not on the loop (imports are slow).
            backend_class(parse_url(self.url()))
        return AioCase(self, f"a-{uuid.uuid4().hex[:12]}")


def aio_test(fn: Callable[[S, AioCase], Awaitable[None]]) -> Callable[[S, AioCase], None]:
    """Turn ``async def test_x(self, aio)`` into a pytest test that runs it with
    :meth:`AioCase.run`."""

    @functools.wraps(fn)
    def test(self: S, aio: AioCase) -> None:
        aio.run(functools.partial(fn, self, aio))

    return test
