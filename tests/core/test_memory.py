"""memory:// specifics: seed 003's lease semantics on an injected clock."""

from __future__ import annotations

import pytest

import fencing_coord as fc
from fencing_coord.testing import FakeClock


@pytest.fixture
def table(request: pytest.FixtureRequest) -> str:
    return f"memory://{request.node.name}"


def test_first_token_of_a_fresh_table_is_1(table: str) -> None:
    with fc.connect(table) as backend:
        assert backend.acquire("x", timeout=1).token == 1


def test_expiry_is_inclusive_of_the_boundary(table: str) -> None:
    clock = FakeClock(0.0)
    holder = fc.connect(table, ttl=10, clock=clock)
    other = fc.connect(table, ttl=10, clock=FakeClock(0.0))
    grant = holder.acquire("db", timeout=0)
    clock.advance(9.999)
    assert not grant.lost
    assert other.try_acquire("db") is None
    clock.advance(0.001)  # now exactly grant + ttl
    assert grant.lost
    assert grant.lost_reason == "lease expired"
    taken = other.try_acquire("db")
    assert taken is not None
    assert taken.token == grant.token + 1


def test_renew_restarts_the_lease_from_the_renewal(table: str) -> None:
    clock = FakeClock(0.0)
    holder = fc.connect(table, ttl=10, clock=clock)
    other = fc.connect(table, clock=FakeClock())
    grant = holder.acquire("db", timeout=0)
    clock.advance(8)
    holder.renew(grant)
    clock.advance(8)  # 16 s after the grant, 8 s after the renewal
    assert other.try_acquire("db") is None
    assert not grant.lost
    clock.advance(2)
    assert other.try_acquire("db") is not None
    assert grant.lost


def test_seed_003_scenario_on_locks(table: str) -> None:
    """A gets 1, stalls past its TTL, B gets 2; A's grant is lost and cannot be renewed."""
    clock_a = FakeClock(0.0)
    a = fc.connect(table, ttl=10, clock=clock_a)
    b = fc.connect(table, ttl=10, clock=FakeClock(15.0))
    token_a = a.acquire("db", timeout=0)
    assert token_a.token == 1
    clock_a.advance(15)
    token_b = b.acquire("db", timeout=0)
    assert token_b.token == 2
    with pytest.raises(fc.LockLost):
        a.renew(token_a)
    assert a.release(token_a) is False
    assert b.describe("db").holder == b.identity


def test_waiter_is_granted_when_the_holder_expires(table: str) -> None:
    clock = FakeClock(0.0)
    holder = fc.connect(table, ttl=5, clock=clock)
    waiter = fc.connect(table, clock=FakeClock())
    grant = holder.acquire("db", timeout=0)
    lost: list[fc.Grant] = []
    grant.on_lost(lost.append)
    clock.advance(5)
    taken = waiter.acquire("db", timeout=30)
    assert taken.token > grant.token
    assert grant.wait_lost(30)
    assert lost == [grant]


def test_same_name_shares_a_table_other_names_do_not(table: str) -> None:
    one, two = fc.connect(table), fc.connect(table)
    elsewhere = fc.connect(table + "-elsewhere")
    one.acquire("x", timeout=0)
    assert two.try_acquire("x") is None
    assert elsewhere.try_acquire("x") is not None


def test_background_keepalive_holds_a_short_lease(table: str) -> None:
    """With the real clock the lease is renewed in the background: a waiter times out
    after many TTLs instead of taking the lock over."""
    with fc.connect(table, ttl=0.1) as holder, fc.connect(table, ttl=0.1) as waiter:
        grant = holder.acquire("db", timeout=0)
        with pytest.raises(fc.LockTimeout):
            waiter.acquire("db", timeout=0.6)
        assert not grant.lost


@pytest.mark.parametrize(
    ("url", "options", "fragment"),
    [
        ("memory://x?ttl=abc", {}, "ttl"),
        ("memory://x", {"clock": 5}, "clock"),
        ("memory://x", {"clock": lambda: "noon"}, "clock"),
        ("memory://x:5", {}, "memory://demo"),
        ("memory://x/path", {}, "memory://demo"),
        ("memory://x?namespace=a/b", {}, "namespace"),
    ],
)
def test_bad_memory_urls(url: str, options: dict[str, object], fragment: str) -> None:
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect(url, **options)
    assert fragment in str(info.value)


def test_locks_lists_held_and_waited_names(table: str) -> None:
    backend = fc.connect(table, namespace="listing")
    backend.acquire("b", timeout=0)
    released = backend.acquire("a", timeout=0)
    backend.acquire("c", timeout=0)
    backend.release(released)
    assert backend.locks() == ["b", "c"]
    assert fc.connect(table, namespace="elsewhere").locks() == []
