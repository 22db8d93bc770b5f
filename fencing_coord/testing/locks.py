"""The lock part of the conformance suite: every rule of the contract's "Locks and
tokens" section, as scenarios. Mix :class:`LockBackendConformance` into a test class
together with a :class:`~fencing_coord.testing.BackendFixtures` subclass."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from ..errors import (
    ConfigurationError,
    FencingCoordError,
    InvalidArgument,
    InvalidArgumentType,
    LockLost,
    LockTimeout,
)
from ..interface import Grant, LockBackend
from .closed import ClosedBackendConformance
from .expiry import PROMPT, LeaseExpiryConformance
from .fixtures import MakeBackend
from .pause import PausedHolderConformance

__all__ = ["LockBackendConformance"]

BAD_NAMES: list[Any] = ["", None, 5, b"orders", "a/b", ".", "..", "x" * 201, "tab\there", "nul\x00"]
BAD_TIMEOUTS: list[Any] = [-1, -0.001, math.nan, math.inf, "5", True, [1]]


def _start(fn: Callable[[], Grant]) -> Future[Grant]:
    """Run ``fn`` on its own thread (one thread each, so waiters never share one)."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


def _queued_acquire(
    client: LockBackend, name: str, timeout: float | None = PROMPT
) -> tuple[Future[Grant], threading.Event]:
    """Start ``client.acquire(name)`` on a thread; the event is set once it has queued."""
    queued = threading.Event()
    return _start(lambda: client.acquire(name, timeout, on_queued=queued.set)), queued


class LockBackendConformance(LeaseExpiryConformance, PausedHolderConformance, ClosedBackendConformance):
    """Mixin: the lock contract, against fixtures ``backend``, ``other``,
    ``make_backend`` and ``expire_session`` (see BackendFixtures)."""

    # -- grants and tokens ------------------------------------------------------------

    def test_acquire_returns_grant_with_int_token(self, backend: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        assert isinstance(grant, Grant)
        assert type(grant.token) is int
        assert grant.token >= 0
        assert grant.name == "orders"
        assert grant.holder == backend.identity
        assert not grant.lost

    def test_tokens_strictly_increase_for_one_client(self, backend: LockBackend) -> None:
        tokens = []
        for _ in range(5):
            grant = backend.acquire("orders", timeout=PROMPT)
            tokens.append(grant.token)
            assert backend.release(grant) is True
        assert tokens == sorted(set(tokens)), tokens

    def test_tokens_strictly_increase_across_clients(self, make_backend: MakeBackend) -> None:
        clients = [make_backend() for _ in range(3)]
        tokens = []
        for _ in range(3):
            for client in clients:
                grant = client.acquire("orders", timeout=PROMPT)
                tokens.append(grant.token)
                client.release(grant)
        assert tokens == sorted(set(tokens)), f"tokens went backwards or repeated: {tokens}"

    def test_other_names_do_not_break_monotonicity(self, backend: LockBackend, other: LockBackend) -> None:
        first = backend.acquire("orders", timeout=PROMPT)
        backend.release(first)
        for name in ("payments", "invoices"):
            other.release(other.acquire(name, timeout=PROMPT))
        second = other.acquire("orders", timeout=PROMPT)
        assert second.token > first.token

    def test_names_are_independent_locks(self, backend: LockBackend, other: LockBackend) -> None:
        backend.acquire("orders", timeout=PROMPT)
        grant = other.try_acquire("payments")
        assert grant is not None

    def test_namespaces_are_independent(self, make_backend: MakeBackend, namespace: str) -> None:
        mine = make_backend()
        elsewhere = make_backend(namespace=namespace + "-other")
        mine.acquire("orders", timeout=PROMPT)
        assert elsewhere.try_acquire("orders") is not None

    # -- try_acquire and timeouts -------------------------------------------------------

    def test_try_acquire_is_none_while_another_holds(self, backend: LockBackend, other: LockBackend) -> None:
        backend.acquire("orders", timeout=PROMPT)
        assert other.try_acquire("orders") is None

    def test_try_acquire_succeeds_after_release(self, backend: LockBackend, other: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        assert other.try_acquire("orders") is None
        backend.release(grant)
        taken = other.try_acquire("orders")
        assert taken is not None
        assert taken.token > grant.token

    def test_acquire_raises_lock_timeout(self, backend: LockBackend, other: LockBackend) -> None:
        backend.acquire("orders", timeout=PROMPT)
        with pytest.raises(LockTimeout):
            other.acquire("orders", timeout=0.2)

    @pytest.mark.parametrize("timeout", [1e300, 10**400], ids=["1e300", "10**400"])
    def test_a_timeout_beyond_max_seconds_waits_like_none(
        self, backend: LockBackend, other: LockBackend, timeout: float
    ) -> None:
        """Above validation.MAX_SECONDS a timeout means "forever" on every backend: no
        overflow in anyone's clock arithmetic, and the waiter is granted at release."""
        grant = backend.acquire("orders", timeout=PROMPT)
        queued = threading.Event()
        waiter = _start(lambda: other.acquire("orders", timeout=timeout, on_queued=queued.set))
        assert queued.wait(PROMPT), "the waiter never queued"
        backend.release(grant)
        assert waiter.result(PROMPT).token > grant.token

    def test_lock_timeout_is_in_the_hierarchy(self, backend: LockBackend, other: LockBackend) -> None:
        backend.acquire("orders", timeout=PROMPT)
        with pytest.raises(FencingCoordError) as info:
            other.acquire("orders", timeout=0)
        assert isinstance(info.value, LockTimeout)
        assert isinstance(info.value, TimeoutError)

    def test_raising_on_queued_leaves_no_trace(self, make_backend: MakeBackend) -> None:
        holder, quitter, third = make_backend(), make_backend(), make_backend()
        grant = holder.acquire("orders", timeout=PROMPT)

        def interrupted() -> None:
            raise KeyboardInterrupt  # as Ctrl-C (or a signal handler) would, while queued

        with pytest.raises(KeyboardInterrupt):
            quitter.acquire("orders", timeout=PROMPT, on_queued=interrupted)
        assert quitter.identity not in holder.describe("orders").waiters
        holder.release(grant)
        assert third.try_acquire("orders") is not None, "an interrupted waiter still blocks the lock"

    def test_timed_out_waiter_leaves_no_trace(self, make_backend: MakeBackend) -> None:
        holder, quitter, third = make_backend(), make_backend(), make_backend()
        grant = holder.acquire("orders", timeout=PROMPT)
        with pytest.raises(LockTimeout):
            quitter.acquire("orders", timeout=0.2)
        assert quitter.identity not in holder.describe("orders").waiters
        holder.release(grant)
        assert third.try_acquire("orders") is not None, "a withdrawn waiter still blocks the lock"

    # -- release and renew --------------------------------------------------------------

    def test_release_returns_true_then_false(self, backend: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        assert backend.release(grant) is True
        assert backend.release(grant) is False
        assert grant.released
        assert not grant.lost

    def test_release_by_non_holder_is_refused(self, backend: LockBackend, other: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        with pytest.raises(InvalidArgument):
            other.release(grant)
        assert other.try_acquire("orders") is None, "a non-holder's release freed the lock"
        assert backend.release(grant) is True

    def test_renew_by_non_holder_is_refused(self, backend: LockBackend, other: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        with pytest.raises(InvalidArgument):
            other.renew(grant)

    def test_renew_keeps_the_token(self, backend: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        renewed = backend.renew(grant)
        assert renewed.token == grant.token
        assert renewed.name == "orders"
        assert not renewed.lost
        assert backend.describe("orders").token == grant.token

    def test_renew_after_release_raises_lock_lost(self, backend: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        backend.release(grant)
        with pytest.raises(LockLost):
            backend.renew(grant)

    def test_new_acquisition_gets_larger_token_than_renewed_one(self, backend: LockBackend, other: LockBackend) -> None:
        grant = backend.renew(backend.acquire("orders", timeout=PROMPT))
        backend.release(grant)
        assert other.acquire("orders", timeout=PROMPT).token > grant.token

    def test_release_does_not_fire_on_lost(self, backend: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        fired = threading.Event()
        grant.on_lost(lambda g: fired.set())
        backend.release(grant)
        backend.close()
        assert not grant.lost
        assert not fired.is_set()

    # -- reentrancy -------------------------------------------------------------------------

    def test_reacquire_by_holder_does_not_deadlock(self, backend: LockBackend) -> None:
        outer = backend.acquire("orders", timeout=PROMPT)
        inner = backend.acquire("orders", timeout=PROMPT)
        assert inner.token >= outer.token
        again = backend.try_acquire("orders")
        assert again is not None
        assert again.token >= outer.token

    def test_reentrant_release_keeps_the_lock_until_the_last(self, backend: LockBackend, other: LockBackend) -> None:
        with backend.lock("orders", timeout=PROMPT) as outer:
            with backend.lock("orders", timeout=PROMPT):
                pass
            assert other.try_acquire("orders") is None, "inner release gave the outer hold up"
            assert not outer.released
        assert other.try_acquire("orders") is not None

    def test_another_thread_of_the_same_client_waits(self, backend: LockBackend) -> None:
        grant = backend.acquire("orders", timeout=PROMPT)
        future, queued = _queued_acquire(backend, "orders")
        assert queued.wait(PROMPT)
        assert not future.done()
        backend.release(grant)
        second = future.result(PROMPT)
        assert second.token > grant.token
        backend.release(second)

    # -- fairness ---------------------------------------------------------------------------

    def test_waiters_are_served_in_arrival_order(self, make_backend: MakeBackend) -> None:
        holder = make_backend()
        grant = holder.acquire("orders", timeout=PROMPT)
        waiters = [make_backend() for _ in range(3)]
        futures = []
        for client in waiters:
            future, queued = _queued_acquire(client, "orders")
            assert queued.wait(PROMPT)
            futures.append(future)
        assert holder.describe("orders").waiters == tuple(c.identity for c in waiters)
        holder.release(grant)
        order = []
        for client, future in zip(waiters, futures, strict=True):
            got = future.result(PROMPT)
            order.append(got.holder)
            assert all(not f.done() for f in futures[len(order):]), "a later waiter was served early"
            client.release(got)
        assert order == [c.identity for c in waiters]

    def test_describe_reports_holder_token_and_waiters(self, backend: LockBackend, other: LockBackend) -> None:
        assert backend.describe("orders").holder is None
        grant = backend.acquire("orders", timeout=PROMPT)
        future, queued = _queued_acquire(other, "orders")
        assert queued.wait(PROMPT)
        state = other.describe("orders")
        assert (state.holder, state.token, state.waiters) == (backend.identity, grant.token, (other.identity,))
        backend.release(grant)
        other.release(future.result(PROMPT))

    def test_mutual_exclusion_under_contention(self, make_backend: MakeBackend) -> None:
        clients = [make_backend() for _ in range(3)]
        inside = threading.Lock()
        overlaps: list[str] = []
        tokens: list[int] = []

        def work(client: LockBackend) -> None:
            for _ in range(4):
                with client.lock("orders", timeout=PROMPT) as grant:
                    if not inside.acquire(blocking=False):
                        overlaps.append(client.identity)
                        continue
                    tokens.append(grant.token)
                    inside.release()

        threads = [threading.Thread(target=work, args=(c,)) for c in clients for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(PROMPT * 2)
        assert not overlaps
        assert len(tokens) == 24
        assert tokens == sorted(set(tokens)), "grants were not strictly ordered by token"

    # -- the context manager ---------------------------------------------------------------

    def test_lock_context_manager_yields_the_grant_and_releases(self, backend: LockBackend, other: LockBackend) -> None:
        with backend.lock("orders", timeout=PROMPT) as grant:
            assert isinstance(grant, Grant)
            assert other.try_acquire("orders") is None
        assert grant.released
        assert other.try_acquire("orders") is not None

    def test_lock_context_manager_releases_on_exception(self, backend: LockBackend, other: LockBackend) -> None:
        class Boom(Exception):
            pass

        with pytest.raises(Boom), backend.lock("orders", timeout=PROMPT):
            raise Boom
        assert other.try_acquire("orders") is not None

    def test_close_releases_everything(self, backend: LockBackend, other: LockBackend) -> None:
        backend.acquire("orders", timeout=PROMPT)
        backend.acquire("payments", timeout=PROMPT)
        backend.close()
        assert other.try_acquire("orders") is not None
        assert other.try_acquire("payments") is not None
        with pytest.raises(InvalidArgument):
            backend.acquire("orders", timeout=0)

    def test_close_withdraws_a_waiting_acquire(self, make_backend: MakeBackend) -> None:
        holder, closing, third = make_backend(), make_backend(), make_backend()
        grant = holder.acquire("orders", timeout=PROMPT)
        future, queued = _queued_acquire(closing, "orders")
        assert queued.wait(PROMPT)
        closing.close()
        with pytest.raises(InvalidArgument, match="closed"):
            future.result(PROMPT)
        holder.release(grant)
        assert third.try_acquire("orders") is not None, "a closed client's waiter still blocks the lock"

    # -- bad input -----------------------------------------------------------------------------

    @pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
    def test_bad_names_are_rejected(self, backend: LockBackend, name: Any) -> None:
        with pytest.raises((InvalidArgument, InvalidArgumentType)) as info:
            backend.acquire(name, timeout=0)
        assert "name" in str(info.value)
        with pytest.raises((InvalidArgument, InvalidArgumentType)) as info:
            backend.try_acquire(name)
        assert "name" in str(info.value)

    @pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=repr)
    def test_bad_timeouts_are_rejected(self, backend: LockBackend, timeout: Any) -> None:
        with pytest.raises((InvalidArgument, InvalidArgumentType)) as info:
            backend.acquire("orders", timeout=timeout)
        assert "timeout" in str(info.value)
        assert backend.describe("orders").holder is None, "a rejected call took the lock"

    @pytest.mark.parametrize("ttl", [0, -5, "soon", math.nan, True, 1e300, 10**400, "1e400"],
                             ids=["0", "-5", "'soon'", "nan", "True", "1e300", "10**400", "'1e400'"])
    def test_bad_ttls_are_rejected(self, make_backend: MakeBackend, ttl: Any) -> None:
        with pytest.raises(ConfigurationError) as info:
            make_backend(ttl=ttl)
        assert "ttl" in str(info.value)

    def test_foreign_objects_are_not_grants(self, backend: LockBackend) -> None:
        with pytest.raises(InvalidArgumentType):
            backend.release("orders")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentType):
            backend.renew(None)  # type: ignore[arg-type]
