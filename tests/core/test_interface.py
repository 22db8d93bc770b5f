"""The base class's own rules, checked on memory:// (every backend inherits them)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.memory import MemoryBackend
from fencing_coord.testing import FakeClock


def test_a_new_thread_never_reenters_a_finished_threads_grant(request: pytest.FixtureRequest) -> None:
    """CPython reuses the ident of a finished thread; reentrancy must not follow it."""
    backend = fc.connect(f"memory://{request.node.name}")
    grants: list[fc.Grant] = []
    first = threading.Thread(target=lambda: grants.append(backend.acquire("x", timeout=0)))
    first.start()
    first.join()
    outcomes: list[Any] = []
    for _ in range(50):  # one of them is very likely to get the finished thread's ident
        def attempt() -> None:
            try:
                outcomes.append((threading.get_ident(), backend.acquire("x", timeout=0)))
            except fc.LockTimeout:
                outcomes.append((threading.get_ident(), None))

        thread = threading.Thread(target=attempt)
        thread.start()
        thread.join()
    assert all(grant is None for _, grant in outcomes), "a new thread shared another thread's grant"
    assert first.ident in {ident for ident, _ in outcomes}, "no ident was reused: the scenario did not happen"
    assert backend.release(grants[0]) is True


class _ClosedMidAcquire(MemoryBackend):  # type: ignore[misc]  # backends/ is untyped to mypy here
    """Closes itself (from another thread) right after the table granted the lock."""

    def _acquire(self, *args: Any) -> fc.Grant | None:
        grant: fc.Grant | None = super()._acquire(*args)
        closer = threading.Thread(target=self.close)
        closer.start()
        closer.join()
        return grant


def test_close_racing_an_acquire_gives_the_lock_back(request: pytest.FixtureRequest) -> None:
    table = request.node.name
    racing = _ClosedMidAcquire(table, clock=FakeClock())
    with pytest.raises(fc.InvalidArgument, match="closed"):
        racing.acquire("x", timeout=0)
    other = fc.connect(f"memory://{table}", clock=FakeClock())
    assert other.try_acquire("x") is not None, "the closed backend's grant was never released"


def test_keepalive_reports_a_lease_that_expired_during_a_pause(request: pytest.FixtureRequest) -> None:
    """A process stalled past its TTL (here: the table held by a hog) learns it at once
    from its own keepalive, not only when another client happens to look."""
    backend = MemoryBackend(request.node.name, ttl=0.2)
    grant = backend.acquire("x", timeout=0)
    told = threading.Event()
    grant.on_lost(lambda _grant: told.set())
    with backend._table.mutex:  # the stall: no keepalive can run
        threading.Event().wait(0.4)  # the pause being simulated, not a synchronisation
    # Nobody reads grant.lost (which would check): only the keepalive can tell.
    assert told.wait(10), "the keepalive dropped an expired lease without reporting it"
    assert grant.lost_reason == "lease expired"
    backend.close()
