"""The async conformance suite on memory://, each client on its own injected clock."""

from __future__ import annotations

from typing import Any

from fencing_coord.aio import AsyncLockBackend
from fencing_coord.testing import AsyncBackendFixtures, AsyncElectionConformance, AsyncLockConformance, FakeClock


class AsyncMemoryFixtures(AsyncBackendFixtures):
    backend_url = "memory://aio-conformance"

    async def connect(self, **options: Any) -> AsyncLockBackend:
        clock = FakeClock()
        backend = await super().connect(clock=clock, **options)
        backend.test_clock = clock  # type: ignore[attr-defined]
        return backend

    async def expire(self, backend: AsyncLockBackend) -> None:
        backend.test_clock.advance(backend.ttl)  # type: ignore[attr-defined]


class TestAsyncMemoryConformance(AsyncLockConformance, AsyncMemoryFixtures):
    pass


class TestAsyncMemoryElectionConformance(AsyncElectionConformance, AsyncMemoryFixtures):
    pass


class TestAsyncMemoryRealClock(AsyncLockConformance, AsyncBackendFixtures):
    """With the default clock: the backend's renewal task keeps the leases."""

    backend_url = "memory://aio-real-clock"
