"""The expiry part of the lock conformance suite: what happens to a grant whose lease or
session ends on the server (the ``expire_session`` fixture ends it on demand)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from ..errors import LockLost
from ..interface import Grant, LockBackend

__all__ = ["AT_ONCE", "PROMPT", "LeaseExpiryConformance"]

# Generous bound for "this should happen promptly" waits; never reached when it works.
PROMPT = 30.0
#: Seconds within which a call that needs no request must return.
AT_ONCE = 0.5


class LeaseExpiryConformance:
    """Mixin (part of :class:`~fencing_coord.testing.LockBackendConformance`): a lost
    lease is reported once, renew and release say so, and tokens keep increasing."""

    def test_after_expiry_another_client_gets_a_larger_token(
        self, backend: LockBackend, other: LockBackend, expire_session: Callable[[LockBackend], None]
    ) -> None:
        old = backend.acquire("orders", timeout=PROMPT)
        expire_session(backend)
        new = other.acquire("orders", timeout=PROMPT)
        assert new.token > old.token
        assert old.wait_lost(PROMPT)
        assert old.lost

    def test_lost_grant_fires_on_lost_once(
        self, backend: LockBackend, other: LockBackend, expire_session: Callable[[LockBackend], None]
    ) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        calls: list[Grant] = []
        threads: list[threading.Thread] = []

        def on_lost(g: Grant) -> None:
            calls.append(g)
            threads.append(threading.current_thread())

        grant.on_lost(on_lost)
        expire_session(backend)
        other.acquire("orders", timeout=PROMPT)
        assert grant.wait_lost(PROMPT)
        # Everything that could notice the loss again must not fire the callback again.
        with pytest.raises(LockLost):
            backend.renew(grant)
        assert backend.release(grant) is False
        assert grant.lost
        assert grant.wait_lost(PROMPT)
        assert calls == [grant]
        assert threads[0] is not threading.main_thread()

    def test_on_lost_registered_after_loss_still_fires(
        self, backend: LockBackend, other: LockBackend, expire_session: Callable[[LockBackend], None]
    ) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        expire_session(backend)
        other.acquire("orders", timeout=PROMPT)
        assert grant.wait_lost(PROMPT)
        fired = threading.Event()
        grant.on_lost(lambda g: fired.set())
        assert fired.wait(PROMPT)

    def test_release_of_a_lost_grant_is_false_at_once(
        self, backend: LockBackend, other: LockBackend, expire_session: Callable[[LockBackend], None]
    ) -> None:
        """A grant known lost is released without asking the service: False, at once,
        and the release is final (no loss reported later, a second release is False)."""
        grant = backend.acquire("orders", timeout=PROMPT)
        fired: list[Grant] = []
        grant.on_lost(fired.append)
        expire_session(backend)
        taken = other.acquire("orders", timeout=PROMPT)
        assert grant.wait_lost(PROMPT)
        started = time.monotonic()
        assert backend.release(grant) is False
        took = time.monotonic() - started
        assert took < AT_ONCE, f"releasing a grant known lost took {took:.2f} s"
        assert grant.released
        assert backend.release(grant) is False
        assert fired == [grant]
        assert other.describe("orders").token == taken.token, "the lost grant's release touched the successor"

    def test_renew_after_expiry_raises_lock_lost(
        self, backend: LockBackend, other: LockBackend, expire_session: Callable[[LockBackend], None]
    ) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        expire_session(backend)
        other.acquire("orders", timeout=PROMPT)
        with pytest.raises(LockLost):
            backend.renew(grant)

    def test_client_acquires_again_after_its_session_expired(
        self, backend: LockBackend, expire_session: Callable[[LockBackend], None]
    ) -> None:
        old = backend.acquire("orders", timeout=PROMPT)
        expire_session(backend)
        assert old.wait_lost(PROMPT)
        new = backend.acquire("orders", timeout=PROMPT)
        assert new.token > old.token
        assert not new.lost
