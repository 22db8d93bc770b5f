"""The cross-backend conformance suite: mixin test classes plus overridable fixtures.

A backend, ours or a user's, opts in with one class (the fsspec pattern)::

    from fencing_coord.testing import BackendFixtures, LockBackendConformance

    class TestMyBackend(LockBackendConformance, BackendFixtures):
        backend_url = "mine://127.0.0.1:9999"

        def expire(self, backend):      # optional: end a session on the server now
            ...

Tests needing a capability the backend lacks are skipped with the reason.
"""

from __future__ import annotations

from .aio_elections import AsyncElectionConformance
from .aio_fixtures import AioCase, AsyncBackendFixtures, aio_test
from .aio_locks import AsyncLockConformance
from .elections import ElectionConformance, ObservedLeaders
from .fixtures import BackendFixtures, FakeClock, MakeBackend
from .locks import LockBackendConformance

__all__ = [
    "AioCase",
    "AsyncBackendFixtures",
    "AsyncElectionConformance",
    "AsyncLockConformance",
    "BackendFixtures",
    "ElectionConformance",
    "FakeClock",
    "LockBackendConformance",
    "MakeBackend",
    "ObservedLeaders",
    "aio_test",
]
