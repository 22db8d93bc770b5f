"""The whole conformance suite on memory://, each client on its own injected clock."""

from __future__ import annotations

from typing import Any

from fencing_coord import LockBackend
from fencing_coord.testing import BackendFixtures, ElectionConformance, FakeClock, LockBackendConformance


class MemoryFixtures(BackendFixtures):
    backend_url = "memory://conformance"

    def connect(self, **options: Any) -> LockBackend:
        clock = FakeClock()
        backend = super().connect(clock=clock, **options)
        backend.test_clock = clock  # type: ignore[attr-defined]
        return backend

    def expire(self, backend: LockBackend) -> None:
        # The holder's lease is measured on its own clock: moving it past the TTL is
        # exactly a holder paused past its lease.
        backend.test_clock.advance(backend.ttl)  # type: ignore[attr-defined]


class TestMemoryConformance(LockBackendConformance, MemoryFixtures):
    pass


class TestMemoryElectionConformance(ElectionConformance, MemoryFixtures):
    pass
