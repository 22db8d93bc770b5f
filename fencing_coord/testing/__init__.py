"""The cross-backend conformance suite: mixin test classes plus overridable fixtures.

A backend, ours or a user's, opts in with one class (the fsspec pattern)::

    from fencing_coord.testing import BackendFixtures, LockBackendConformance

    class TestMyBackend(LockBackendConformance, BackendFixtures):
        backend_url = "mine://127.0.0.1:9999"

        def expire(self, backend):      # optional: end a session on the server now
            ...

Tests needing a capability the backend lacks are skipped with the reason.

The names are imported on first use, so that the tools in this package that do not need
pytest (the network lab, the fault campaign and its worker processes) start without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULE_OF = {
    "AioCase": ".aio_fixtures",
    "AsyncBackendFixtures": ".aio_fixtures",
    "AsyncElectionConformance": ".aio_elections",
    "AsyncLockConformance": ".aio_locks",
    "aio_test": ".aio_fixtures",
    "BackendFixtures": ".fixtures",
    "ElectionConformance": ".elections",
    "FakeClock": ".fixtures",
    "LockBackendConformance": ".locks",
    "MakeBackend": ".fixtures",
    "ObservedLeaders": ".elections",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
    globals()[name] = value
    return value
