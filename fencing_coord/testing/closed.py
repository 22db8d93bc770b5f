"""The closed part of the lock conformance suite: once ``close()`` has returned, every
call that would need the service raises :class:`InvalidArgument` ("closed"), on every
backend, instead of reaching (or failing to reach) the service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ..errors import InvalidArgument, LockLost, NotSupported
from ..interface import LockBackend
from .expiry import PROMPT

__all__ = ["ClosedBackendConformance"]


class ClosedBackendConformance:
    """Mixin (part of :class:`~fencing_coord.testing.LockBackendConformance`)."""

    def test_calls_after_close_are_invalid_argument(self, backend: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        backend.close()
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("acquire", lambda: backend.acquire("orders", timeout=0)),
            ("try_acquire", lambda: backend.try_acquire("orders")),
            ("describe", lambda: backend.describe("orders")),
            ("locks", lambda: backend.locks()),
            ("election", lambda: backend.election("leader")),
        ]
        _each_refused(calls)
        # The grant was released by close(): renewing it says so; releasing it is False.
        with pytest.raises(LockLost):
            backend.renew(grant)
        assert backend.release(grant) is False

    def test_an_election_of_a_closed_backend_is_invalid_argument(self, backend: LockBackend) -> None:
        try:
            election = backend.election("leader")
        except NotSupported:
            pytest.skip(f"{type(backend).__name__} has no leader election")
        term = election.campaign(timeout=PROMPT)
        backend.close()
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("leader", lambda: election.leader()),
            ("observe", lambda: election.observe(lambda leader: None)),
            ("campaign", lambda: election.campaign(timeout=0)),
        ]
        _each_refused(calls)
        assert term.resigned
        with pytest.raises(LockLost):
            term.proclaim(b"late")


def _each_refused(calls: list[tuple[str, Callable[[], Any]]]) -> None:
    failures = []
    for what, call in calls:
        try:
            call()
        except InvalidArgument as exc:
            if "closed" not in str(exc):
                failures.append(f"{what}: InvalidArgument without 'closed': {exc}")
        except Exception as exc:  # reported below, with every other call's outcome
            failures.append(f"{what}: {type(exc).__name__}: {exc}")
        else:
            failures.append(f"{what}: no exception")
    assert not failures, "calls after close() must raise InvalidArgument ('closed'):\n" + "\n".join(failures)
