"""ZooKeeperStore behind the gate: the admission rules, one versioned compare-and-set per
operation, and what concurrent writers from several sessions see."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend, ZooKeeperStore
from fencing_coord.gate import FencedResource

from .conftest import ZooKeeperTarget

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0


def test_store_is_reachable_through_fc_stores(clients: list[ZooKeeperBackend]) -> None:
    assert fc.stores.ZooKeeperStore is ZooKeeperStore
    with pytest.raises(fc.ConfigurationError, match="ZooKeeperBackend"):
        ZooKeeperStore(fc.connect("memory://x"))


def test_admission_rules(clients: list[ZooKeeperBackend]) -> None:
    resource = FencedResource(ZooKeeperStore(clients[0]))
    assert resource.highest_token("orders") is None
    assert resource.read("orders", "k1") is None
    first = resource.write("orders", "k1", b"a", token=7)
    assert (first.accepted, first.highest_token) == (True, None)
    assert resource.write("orders", "k2", b"b", token=7).accepted, "an equal token is admitted"
    stale = resource.write("orders", "k1", b"stale", token=6)
    assert (stale.accepted, stale.highest_token, stale.reason) == (False, 7, "stale token 6 < 7")
    assert resource.read("orders", "k1") == b"a"
    assert resource.write("orders", "k1", b"c", token=9).accepted
    assert resource.highest_token("orders") == 9
    # Another resource has its own highest token.
    assert resource.write("payments", "k1", b"x", token=1).accepted


def test_strict_mode_refuses_equal_tokens(clients: list[ZooKeeperBackend]) -> None:
    resource = FencedResource(ZooKeeperStore(clients[0]), strict=True)
    assert resource.write("orders", "k1", b"a", token=3).accepted
    assert not resource.write("orders", "k1", b"b", token=3).accepted
    assert resource.read("orders", "k1") == b"a"


def test_fenced_read_raises_the_highest_token(clients: list[ZooKeeperBackend]) -> None:
    a, b = (FencedResource(ZooKeeperStore(c)) for c in clients[:2])
    assert a.write("orders", "counter", b"1", token=5).accepted
    # B (token 8) reads first: from then on A's write (token 5, computed earlier) is stale.
    assert b.read("orders", "counter", token=8) == b"1"
    assert a.highest_token("orders") == 8
    late = a.write("orders", "counter", b"2", token=5)
    assert not late.accepted
    assert late.reason == "stale token 5 < 8"
    with pytest.raises(fc.StaleTokenError):
        a.read("orders", "counter", token=5)
    # An equal token reads without changing anything; a missing key reads as None.
    assert b.read("orders", "counter", token=8) == b"1"
    assert b.read("orders", "nothing", token=8) is None
    assert b.read("fresh", "k", token=2) is None
    assert b.highest_token("fresh") == 2


def test_plain_writes_leave_tokens_alone(clients: list[ZooKeeperBackend]) -> None:
    unfenced = fc.UnfencedResource(ZooKeeperStore(clients[0]))
    fenced = FencedResource(ZooKeeperStore(clients[1]))
    assert fenced.write("orders", "k1", b"fenced", token=4).accepted
    unfenced.write("orders", "k1", b"anything", token=1)
    assert fenced.read("orders", "k1") == b"anything"
    assert fenced.highest_token("orders") == 4


def test_stores_are_shared_by_sessions_and_namespaced(clients: list[ZooKeeperBackend]) -> None:
    mine = FencedResource(ZooKeeperStore(clients[0]))
    theirs = FencedResource(ZooKeeperStore(clients[1]))
    elsewhere = FencedResource(ZooKeeperStore(clients[2], namespace=f"{clients[2].namespace}-other"))
    assert mine.write("orders", "k1", b"v", token=3).accepted
    assert theirs.read("orders", "k1") == b"v"
    assert elsewhere.read("orders", "k1") is None


def test_concurrent_writers_are_linearised(clients: list[ZooKeeperBackend]) -> None:
    # Twelve writers on three sessions, each with its own token, all at once. The gate
    # admits a token only above every earlier admitted one, in one compare-and-set: so
    # the admitted writes, ordered by token, must each report the previous one as the
    # highest before them, and the value left is the highest admitted token's.
    resources = [FencedResource(ZooKeeperStore(c)) for c in clients]
    start = threading.Barrier(12)
    outcomes: dict[int, Any] = {}
    lock = threading.Lock()

    def write(token: int) -> None:
        resource = resources[token % 3]
        start.wait(PROMPT)
        for attempt in range(3):
            result = resource.write("orders", "k", str(token).encode(), token=token * 10 + attempt)
            with lock:
                outcomes[token * 10 + attempt] = result

    threads = [threading.Thread(target=write, args=(t,)) for t in range(1, 13)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROMPT)
    accepted = sorted(token for token, result in outcomes.items() if result.accepted)
    assert accepted, "nothing was admitted"
    previous = None
    for token in accepted:
        assert outcomes[token].highest_token == previous, (token, outcomes[token], previous)
        previous = token
    for token, result in outcomes.items():
        if not result.accepted:
            assert result.highest_token is not None
            assert result.highest_token > token
    assert resources[0].highest_token("orders") == accepted[-1]
    assert resources[0].read("orders", "k") == str(accepted[-1] // 10).encode()


def test_counter_under_the_lock_loses_no_increment(clients: list[ZooKeeperBackend]) -> None:
    resources = [FencedResource(ZooKeeperStore(c)) for c in clients]

    def work(i: int) -> None:
        for _ in range(10):
            with clients[i].lock("orders", timeout=PROMPT) as grant:
                value = resources[i].read("orders", "counter", token=grant.token)
                n = int(value or b"0") + 1
                resources[i].write("orders", "counter", str(n).encode(), token=grant.token).raise_for_status()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROMPT * 3)
    assert resources[0].read("orders", "counter") == b"30"


def test_a_resource_is_not_bounded_by_one_znode(clients: list[ZooKeeperBackend]) -> None:
    # One znode per key (issue 13): values of the largest size fit side by side; only a
    # value above max_value_size is refused, up front.
    store = ZooKeeperStore(clients[0])
    resource = FencedResource(store)
    big = b"x" * store.max_value_size
    assert resource.write("orders", "k1", big, token=1).accepted
    assert resource.write("orders", "k2", big[:-1] + b"y", token=1).accepted
    assert resource.read("orders", "k1") == big
    assert resource.read("orders", "k2") == big[:-1] + b"y"
    with pytest.raises((fc.InvalidArgument, fc.InvalidArgumentType)):
        resource.write("orders", "k3", b"x" * (store.max_value_size + 1), token=1)
    assert resource.read("orders", "k3") is None


def test_foreign_content_is_reported(clients: list[ZooKeeperBackend], zk_standalone: ZooKeeperTarget) -> None:
    store = ZooKeeperStore(clients[0])
    operator = zk_standalone.raw_client()
    try:
        operator.create(f"/fencing-coord/{clients[0].namespace}/resources/orders", b"not json", makepath=True)
    finally:
        operator.stop()
        operator.close()
    with pytest.raises(fc.ConfigurationError, match="does not hold a fencing-coord resource"):
        FencedResource(store).write("orders", "k1", b"v", token=1)
