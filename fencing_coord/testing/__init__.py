"""The cross-backend conformance suite: mixin test classes plus overridable fixtures.

    from fencing_coord.testing import BackendFixtures, LockBackendConformance

    class TestMyBackend(LockBackendConformance, BackendFixtures):
        backend_url = "mine://127.0.0.1:9999"
"""

from __future__ import annotations

from .fixtures import BackendFixtures, FakeClock, MakeBackend

__all__ = ["BackendFixtures", "FakeClock", "MakeBackend"]
