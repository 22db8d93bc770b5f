"""The gate's contract, scenario by scenario, on every store (memory, SQLite, PostgreSQL, Redis)."""

from __future__ import annotations

import threading
import uuid

import pytest

import fencing_coord.config as fc_config
from fencing_coord.errors import StaleTokenError
from fencing_coord.gate import FencedResource, UnfencedResource, WriteResult
from fencing_coord.stores import Store
from fencing_coord.stores.base import MAX_TOKEN, MAX_VALUE_SIZE
from fencing_coord.testing import FakeClock

from .gate_workers import StoreSpec


def test_first_write_is_accepted_with_no_highest_token(store: Store) -> None:
    result = FencedResource(store).write("orders", "k1", b"v", token=7)
    assert result == WriteResult(accepted=True, highest_token=None, reason=None)
    assert result.raise_for_status() is result


def test_stale_write_is_refused_and_changes_nothing(store: Store) -> None:
    resource = FencedResource(store)
    resource.write("orders", "k1", b"from 9", token=9).raise_for_status()
    result = resource.write("orders", "k1", b"from 7", token=7)
    assert result == WriteResult(accepted=False, highest_token=9, reason="stale token 7 < 9")
    with pytest.raises(StaleTokenError, match="stale token 7 < 9"):
        result.raise_for_status()
    assert resource.read("orders", "k1") == b"from 9"
    assert resource.highest_token("orders") == 9


def test_equal_token_is_accepted_so_one_grant_writes_many_keys(store: Store) -> None:
    resource = FencedResource(store)
    assert resource.write("orders", "k1", b"a", token=5).accepted
    assert resource.write("orders", "k2", b"b", token=5) == WriteResult(True, 5)
    assert resource.write("orders", "k1", b"c", token=5) == WriteResult(True, 5)
    assert (resource.read("orders", "k1"), resource.read("orders", "k2")) == (b"c", b"b")


def test_higher_token_is_accepted_and_reports_the_one_it_replaced(store: Store) -> None:
    resource = FencedResource(store)
    resource.write("orders", "k1", b"a", token=5)
    assert resource.write("orders", "k1", b"b", token=8) == WriteResult(True, 5)
    assert resource.highest_token("orders") == 8


def test_strict_refuses_equal_tokens(store: Store) -> None:
    resource = FencedResource(store, strict=True)
    resource.write("orders", "k1", b"a", token=5).raise_for_status()
    result = resource.write("orders", "k2", b"b", token=5)
    assert result == WriteResult(False, 5, "stale token 5 <= 5")
    assert resource.read("orders", "k2") is None
    assert resource.write("orders", "k2", b"b", token=6).accepted


def test_highest_token_is_kept_per_resource_name(store: Store) -> None:
    resource = FencedResource(store)
    resource.write("orders", "k", b"o", token=9)
    assert resource.write("payments", "k", b"p", token=3).accepted
    assert (resource.highest_token("orders"), resource.highest_token("payments")) == (9, 3)
    assert resource.highest_token("never-written") is None
    assert (resource.read("orders", "k"), resource.read("payments", "k")) == (b"o", b"p")


def test_unfenced_read_returns_value_or_none(store: Store) -> None:
    resource = FencedResource(store)
    assert resource.read("orders", "missing") is None
    resource.write("orders", "k", b"", token=1)
    assert resource.read("orders", "k") == b""


def test_fenced_read_raises_the_highest_token(store: Store) -> None:
    resource = FencedResource(store)
    resource.write("orders", "k", b"v", token=3)
    assert resource.read("orders", "k", token=8) == b"v"
    assert resource.highest_token("orders") == 8
    assert resource.write("orders", "k", b"late", token=3).reason == "stale token 3 < 8"
    assert resource.read("orders", "k") == b"v"


def test_fenced_read_of_a_missing_key_or_resource_still_fences(store: Store) -> None:
    resource = FencedResource(store)
    assert resource.read("fresh", "k", token=4) is None
    assert resource.highest_token("fresh") == 4
    assert not resource.write("fresh", "k", b"x", token=2).accepted


def test_fenced_read_with_the_current_token_reads(store: Store) -> None:
    resource = FencedResource(store)
    resource.write("orders", "k", b"v", token=6)
    assert resource.read("orders", "k", token=6) == b"v"
    assert resource.highest_token("orders") == 6


def test_refused_fenced_read_raises_and_changes_nothing(store: Store) -> None:
    resource = FencedResource(store)
    resource.write("orders", "k", b"v", token=6)
    with pytest.raises(StaleTokenError, match="stale token 5 < 6"):
        resource.read("orders", "k", token=5)
    assert resource.highest_token("orders") == 6
    assert resource.read("orders", "k") == b"v"


def test_strict_fenced_read_consumes_its_token(store: Store) -> None:
    resource = FencedResource(store, strict=True)
    assert resource.read("orders", "k", token=6) is None
    with pytest.raises(StaleTokenError, match="stale token 6 <= 6"):
        resource.read("orders", "k", token=6)
    assert not resource.write("orders", "k", b"v", token=6).accepted


def test_read_modify_write_of_a_paused_holder_is_refused(store: Store) -> None:
    """The contract's lost update: A (7) reads and pauses; B (8) reads the same value
    and writes; A's late write, computed from the old value, must not land."""
    resource = FencedResource(store)
    resource.write("counter", "n", b"41", token=6)
    seen_by_a = resource.read("counter", "n", token=7)
    seen_by_b = resource.read("counter", "n", token=8)
    assert seen_by_a == seen_by_b == b"41"
    assert resource.write("counter", "n", b"42", token=8).accepted
    assert resource.write("counter", "n", b"42", token=7).reason == "stale token 7 < 8"
    assert resource.read("counter", "n") == b"42"


@pytest.mark.parametrize("token", [0, 1, MAX_TOKEN])
def test_token_range_is_stored_exactly(store: Store, token: int) -> None:
    resource = FencedResource(store)
    assert resource.write("orders", "k", b"v", token=token).accepted
    assert resource.highest_token("orders") == token
    assert resource.write("orders", "k", b"w", token=token).highest_token == token


def test_values_are_stored_as_exact_bytes(store: Store) -> None:
    resource = FencedResource(store)
    payloads = {"nul": b"\x00\xff\x00", "big": bytes(range(256)) * (MAX_VALUE_SIZE // 256)}
    for key, payload in payloads.items():
        resource.write("blobs", key, payload, token=1).raise_for_status()
    resource.write("blobs", "array", bytearray(b"ba"), token=1)
    resource.write("blobs", "view", memoryview(b"mv"), token=1)
    for key, payload in payloads.items():
        assert resource.read("blobs", key) == payload
    assert resource.read("blobs", "array", token=1) == b"ba"
    view = resource.read("blobs", "view")
    assert type(view) is bytes
    assert view == b"mv"


def test_threads_sharing_one_store_keep_the_rule(store: Store) -> None:
    resource = FencedResource(store)
    results: list[tuple[int, WriteResult]] = []
    barrier = threading.Barrier(8)

    def writer(first: int) -> None:
        barrier.wait()
        for token in range(first, 160, 8):
            results.append((token, resource.write("threads", "k", str(token).encode(), token=token)))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = sorted((token, r.highest_token) for token, r in results if r.accepted)
    assert [before for _, before in accepted] == [None] + [token for token, _ in accepted[:-1]]
    assert resource.read("threads", "k") == b"159"


def test_unfenced_resource_accepts_everything(store: Store) -> None:
    resource = UnfencedResource(store)
    assert resource.write("orders", "k", b"new", token=9) == WriteResult(True, None)
    assert resource.write("orders", "k", b"stale", token=1) == WriteResult(True, None)
    assert resource.read("orders", "k", token=0) == b"stale"
    assert resource.highest_token("orders") is None


def test_state_survives_reopening_the_store(store_spec: StoreSpec) -> None:
    if store_spec.kind == "memory":
        pytest.skip("a MemoryStore lives in one object")
    with store_spec.open() as first:
        FencedResource(first).write("orders", "k", b"v", token=4)
    with store_spec.open() as second:
        resource = FencedResource(second)
        assert (resource.read("orders", "k"), resource.highest_token("orders")) == (b"v", 4)
        assert not resource.write("orders", "k", b"w", token=3).accepted


@pytest.mark.parametrize("fenced", [True, False], ids=["fenced", "unfenced"])
def test_seed_003_paused_client_after_takeover(store: Store, fenced: bool) -> None:
    """Seed 003: A gets token 1 and writes; A stalls past its TTL; B gets token 2 and
    writes; A wakes and writes again. The fenced resource refuses A (1 < 2); the
    unfenced one lets A overwrite B's data."""
    clock = FakeClock(0.0)
    resource = FencedResource(store) if fenced else UnfencedResource(store)
    table = f"memory://seed-003-{uuid.uuid4().hex[:8]}"  # a fresh lock table: tokens start at 1
    with fc_config.connect(table, clock=clock, ttl=10, identity="A") as a, \
            fc_config.connect(table, clock=clock, ttl=10, identity="B") as b:
        grant_a = a.acquire("db", timeout=0)
        assert grant_a.token == 1
        assert resource.write("db", "row", b"A1", token=grant_a.token).accepted

        clock.advance(15)  # A stalls past its lease
        grant_b = b.acquire("db", timeout=0)
        assert grant_b.token == 2
        assert grant_a.lost
        assert resource.write("db", "row", b"B2", token=grant_b.token).accepted

        late = resource.write("db", "row", b"A-late", token=grant_a.token)
    if fenced:
        assert late == WriteResult(False, 2, "stale token 1 < 2")
        assert resource.read("db", "row") == b"B2"
    else:
        assert late.accepted
        assert resource.read("db", "row") == b"A-late"  # B's data silently overwritten
