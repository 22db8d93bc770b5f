"""ZooKeeperStore's layout (issue 13): a fence znode per resource and a znode per key,
each write one transaction that checks or raises the fence; looked at with a plain
kazoo client. Also: the move from the layout before, and writes whose answer was lost."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.aio.gate import AsyncFencedResource
from fencing_coord.backends.zookeeper import ZooKeeperBackend, ZooKeeperStore
from fencing_coord.backends.zookeeper.aio_store import AsyncZooKeeperStore
from fencing_coord.backends.zookeeper.session import OutcomeUnknown
from fencing_coord.backends.zookeeper.store_nodes import decode_value
from fencing_coord.gate import FencedResource
from fencing_coord.testing.aio_fixtures import run_guarded

from .conftest import ZooKeeperTarget

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0


def fence_path(namespace: str, resource: str) -> str:
    return f"/fencing-coord/{namespace}/resources-v2/{resource}"


def stat(operator: Any, path: str) -> tuple[int, int]:
    """(version, mzxid) of ``path``."""
    _, found = operator.get(path)
    return found.version, found.mzxid


def test_one_znode_per_key_and_equal_tokens_only_check_the_fence(clients: list[ZooKeeperBackend], namespace: str,
                                                                  operator: Any) -> None:
    resource = FencedResource(ZooKeeperStore(clients[0]))
    fence = fence_path(namespace, "orders")
    assert resource.write("orders", "k1", b"one", token=5).accepted
    assert resource.write("orders", "k2", b"two", token=5).accepted
    assert sorted(operator.get_children(fence)) == ["k1", "k2"]
    k1, fence_before = stat(operator, f"{fence}/k1"), stat(operator, fence)
    for n in range(5):
        assert resource.write("orders", "k2", f"two-{n}".encode(), token=5).accepted
    # Writing k2 rewrote neither k1 nor, with an equal token, the fence.
    assert stat(operator, f"{fence}/k1") == k1
    assert stat(operator, fence) == fence_before
    assert stat(operator, f"{fence}/k2")[0] == 5
    assert decode_value(fence, operator.get(f"{fence}/k2")[0], 5).value == b"two-4"
    # A raise sets the fence, in the transaction of the write.
    assert resource.write("orders", "k2", b"raised", token=6).accepted
    version, mzxid = stat(operator, fence)
    assert version == fence_before[0] + 1
    assert mzxid == stat(operator, f"{fence}/k2")[1], "the fence and the key were not written in one transaction"
    assert stat(operator, f"{fence}/k1") == k1
    assert resource.read("orders", "k1") == b"one"


def test_stale_and_strict_refusals_write_nothing(clients: list[ZooKeeperBackend], namespace: str,
                                                 operator: Any) -> None:
    store = ZooKeeperStore(clients[0])
    lenient, strict = FencedResource(store), FencedResource(store, strict=True)
    fence = fence_path(namespace, "orders")
    assert strict.write("orders", "k", b"first", token=9).accepted
    before = stat(operator, f"{fence}/k"), stat(operator, fence)
    # The store knows the versions by now: the refusals are decided on what it remembers.
    stale = lenient.write("orders", "k", b"stale", token=3)
    assert (stale.accepted, stale.highest_token) == (False, 9)
    equal = strict.write("orders", "k", b"equal", token=9)
    assert (equal.accepted, equal.highest_token) == (False, 9)
    assert not lenient.write("orders", "new-key", b"stale", token=8).accepted
    assert (stat(operator, f"{fence}/k"), stat(operator, fence)) == before
    assert not operator.exists(f"{fence}/new-key")
    assert lenient.read("orders", "k") == b"first"


def test_a_raise_overtakes_an_equal_token_whose_versions_are_remembered(clients: list[ZooKeeperBackend]) -> None:
    mine, theirs = FencedResource(ZooKeeperStore(clients[0])), FencedResource(ZooKeeperStore(clients[1]))
    assert mine.write("orders", "k", b"a", token=5).accepted
    assert mine.write("orders", "k", b"b", token=5).accepted  # sent on remembered versions
    assert theirs.write("orders", "other", b"x", token=8).accepted
    late = mine.write("orders", "k", b"late", token=5)  # its fence check fails; it reads and decides again
    assert (late.accepted, late.highest_token) == (False, 8)
    assert theirs.read("orders", "k") == b"b"


def test_a_raise_racing_equal_tokens(clients: list[ZooKeeperBackend], namespace: str, operator: Any) -> None:
    # Six writers of token 5, each on its own key, write until refused while a seventh
    # raises to 8. Each equal-token writer's last accepted write is its key's value, and
    # it came before the raise; every refusal names 8; the raise saw 5 before it.
    stores = [ZooKeeperStore(clients[i % 2]) for i in range(2)]
    resources = [FencedResource(s) for s in stores]
    assert resources[0].write("race", "setup", b"", token=5).accepted
    start = threading.Barrier(7)
    last: dict[int, int] = {}
    refusals: list[int | None] = []
    raised: list[Any] = []

    def equal(writer: int) -> None:
        start.wait(PROMPT)
        for n in range(10_000):
            outcome = resources[writer % 2].write("race", f"w{writer}", str(n).encode(), token=5)
            if not outcome.accepted:
                refusals.append(outcome.highest_token)
                return
            assert outcome.highest_token == 5
            last[writer] = n

    def raise_() -> None:
        start.wait(PROMPT)
        for n in range(20):  # let some equal-token writes through first
            resources[1].write("race", "raiser", str(n).encode(), token=5)
        raised.append(resources[1].write("race", "raiser", b"raised", token=8))

    threads = [threading.Thread(target=equal, args=(w,)) for w in range(6)] + [threading.Thread(target=raise_)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PROMPT * 2)
    [outcome] = raised
    assert (outcome.accepted, outcome.highest_token) == (True, 5)
    assert refusals == [8] * 6
    fence = fence_path(namespace, "race")
    _, raise_zxid = stat(operator, fence)
    assert last, "no equal-token write was admitted before the raise: the race proves nothing"
    for writer in range(6):
        if writer not in last:
            assert not operator.exists(f"{fence}/w{writer}")
            continue
        data, found = operator.get(f"{fence}/w{writer}")
        assert decode_value(fence, data, found.version).value == str(last[writer]).encode()
        assert found.mzxid < raise_zxid


def test_a_missing_key_read_under_a_token_leaves_nothing(clients: list[ZooKeeperBackend], namespace: str,
                                                         operator: Any) -> None:
    resource = FencedResource(ZooKeeperStore(clients[0]))
    assert resource.write("orders", "k", b"v", token=2).accepted
    assert resource.read("orders", "missing", token=2) is None
    assert resource.read("orders", "missing", token=3) is None
    assert operator.get_children(fence_path(namespace, "orders")) == ["k"]
    assert resource.highest_token("orders") == 3


def test_a_resource_of_the_layout_before_is_moved(clients: list[ZooKeeperBackend], namespace: str,
                                                  operator: Any) -> None:
    old = f"/fencing-coord/{namespace}/resources/orders"
    doc = {"highest": 7, "values": {"k1": base64.b64encode(b"old value").decode()}, "writes": []}
    operator.create(old, json.dumps(doc).encode(), makepath=True)
    resource = FencedResource(ZooKeeperStore(clients[0]))
    # Read as it is, without moving it.
    assert resource.highest_token("orders") == 7
    assert resource.read("orders", "k1") == b"old value"
    assert not operator.exists(fence_path(namespace, "orders"))
    # The first fenced operation moves it: the old highest token still refuses.
    assert not resource.write("orders", "k1", b"stale", token=6).accepted
    assert json.loads(operator.get(old)[0])["moved_to"] == fence_path(namespace, "orders")
    assert resource.read("orders", "k1") == b"old value"
    assert resource.write("orders", "k2", b"new", token=7).accepted
    assert resource.highest_token("orders") == 7
    # A new resource leaves a tombstone at the old path too, for older versions to refuse.
    assert resource.write("fresh", "k", b"v", token=1).accepted
    assert "highest" not in json.loads(operator.get(f"/fencing-coord/{namespace}/resources/fresh")[0])


def test_a_fence_that_is_not_ours_is_reported(clients: list[ZooKeeperBackend], namespace: str,
                                              operator: Any) -> None:
    operator.create(fence_path(namespace, "orders"), b"12", makepath=True)
    with pytest.raises(fc.ConfigurationError, match="does not hold a fencing-coord resource fence"):
        FencedResource(ZooKeeperStore(clients[0])).write("orders", "k1", b"v", token=1)


def lose_the_answer(store: ZooKeeperStore, meanwhile: Any, *, sent: bool = True) -> None:
    """The next non-idempotent write of ``store`` loses its answer with the connection:
    after it was applied (``sent``) or before it was sent; ``meanwhile()`` runs before the
    writer can look."""
    session = store._session
    real = session.request

    def request(what: str, start: Any, **kwargs: Any) -> Any:
        if what.startswith("write ") and not kwargs.get("idempotent", True):
            session.request = real
            if sent:
                real(what, start, **kwargs)
            meanwhile()
            raise OutcomeUnknown(what)
        return real(what, start, **kwargs)

    session.request = request


def test_a_write_whose_answer_was_lost_is_recognised(clients: list[ZooKeeperBackend]) -> None:
    first, newer = ZooKeeperStore(clients[0]), FencedResource(ZooKeeperStore(clients[1]))

    def newer_writes_other_keys() -> None:
        for n in range(17):
            newer.write("ledger", f"k{n}", b"newer", token=9).raise_for_status()

    lose_the_answer(first, newer_writes_other_keys)
    outcome = FencedResource(first).write("ledger", "k", b"first", token=7)
    assert (outcome.accepted, outcome.highest_token) == (True, None), "applied, and the key says so"
    assert newer.read("ledger", "k") == b"first"


def test_a_write_lost_before_it_was_sent_is_decided_again(clients: list[ZooKeeperBackend]) -> None:
    first, newer = ZooKeeperStore(clients[0]), FencedResource(ZooKeeperStore(clients[1]))
    lose_the_answer(first, lambda: newer.write("ledger", "k", b"newer", token=9).raise_for_status(), sent=False)
    outcome = FencedResource(first).write("ledger", "k", b"first", token=7)
    assert (outcome.accepted, outcome.highest_token) == (False, 9)
    assert newer.read("ledger", "k") == b"newer"


def test_a_write_written_over_before_it_could_look_is_unknown(clients: list[ZooKeeperBackend]) -> None:
    first, newer = ZooKeeperStore(clients[0]), FencedResource(ZooKeeperStore(clients[1]))

    def newer_writes_the_key_twice() -> None:
        for n in range(2):
            newer.write("ledger", "k", f"newer {n}".encode(), token=9).raise_for_status()

    lose_the_answer(first, newer_writes_the_key_twice)
    with pytest.raises(fc.BackendUnavailable, match="outcome unknown"):
        FencedResource(first).write("ledger", "k", b"first", token=7)


def test_async_store_uses_the_same_nodes(zk_standalone: ZooKeeperTarget, clients: list[ZooKeeperBackend],
                                         namespace: str) -> None:
    blocking = FencedResource(ZooKeeperStore(clients[0]))
    names: list[str] = []

    async def main() -> None:  # run_guarded may run it again: a resource of its own each time
        name = f"orders-{len(names)}"
        names.append(name)
        assert (await asyncio.to_thread(blocking.write, name, "k1", b"blocking", token=4)).accepted
        async with await fc.aio.connect(zk_standalone.url, namespace=namespace, ttl=4) as backend:
            resource = AsyncFencedResource(AsyncZooKeeperStore(backend))
            assert await resource.read(name, "k1", token=4) == b"blocking"
            assert (await resource.write(name, "k2", b"async", token=5)).accepted
            assert (await resource.write(name, "k2", b"async 2", token=5)).accepted
            stale = await resource.write(name, "k1", b"stale", token=4)
            assert (stale.accepted, stale.highest_token) == (False, 5)

    run_guarded(main)
    assert blocking.read(names[-1], "k2") == b"async 2"
    assert blocking.highest_token(names[-1]) == 5


def test_a_write_costs_the_same_whatever_the_resource_size(clients: list[ZooKeeperBackend]) -> None:
    store = ZooKeeperStore(clients[0])
    resource = FencedResource(store)
    for n in range(300):
        fc.UnfencedResource(store).write("big", f"other-{n}", b"x" * 100, token=1)
    sent: list[Any] = []
    real = store._session.request

    def request(what: str, start: Any, **kwargs: Any) -> Any:
        sent.append(start.func.__self__)  # the step whose request this is
        return real(what, start, **kwargs)

    store._session.request = request
    requests = {}
    for name in ("small", "big"):
        assert resource.write(name, "k", b"first", token=3).accepted  # the store learns the versions
        sent.clear()
        assert resource.write(name, "k", b"second", token=3).accepted
        [step] = sent
        requests[name] = [(op.kind, len(op.data)) for op in step.ops]
    store._session.request = real
    # One transaction of two operations (check the fence, set the key), the same for both.
    assert requests["small"] == requests["big"] == [("check", 0), ("set", 17 + len(b"second"))]
