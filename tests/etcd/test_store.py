"""EtcdStore: the gate's fencing kept in etcd, one transaction per fenced operation."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import fencing_coord as fc
from fencing_coord.backends.etcd import EtcdBackend, EtcdStore
from fencing_coord.gate import FencedResource, UnfencedResource
from fencing_coord.stores.base import MAX_TOKEN, MAX_VALUE_SIZE

from .conftest import EtcdTarget

pytestmark = pytest.mark.etcd


@pytest.fixture
def backend(etcd_single: EtcdTarget) -> Iterator[EtcdBackend]:
    with fc.connect(etcd_single.url, namespace=f"t-{uuid.uuid4().hex[:12]}") as made:
        assert isinstance(made, EtcdBackend)
        yield made


@pytest.fixture
def resource(backend: EtcdBackend) -> FencedResource:
    return FencedResource(EtcdStore(backend))


def test_stale_write_is_refused_and_changes_nothing(resource: FencedResource) -> None:
    assert resource.highest_token("orders") is None
    first = resource.write("orders", "k1", b"v9", token=9)
    assert (first.accepted, first.highest_token) == (True, None)
    stale = resource.write("orders", "k1", b"v7", token=7)
    assert (stale.accepted, stale.highest_token, stale.reason) == (False, 9, "stale token 7 < 9")
    assert resource.read("orders", "k1") == b"v9"
    assert resource.highest_token("orders") == 9
    with pytest.raises(fc.StaleTokenError):
        stale.raise_for_status()


def test_equal_token_is_accepted_unless_strict(backend: EtcdBackend) -> None:
    store = EtcdStore(backend)
    relaxed, strict = FencedResource(store), FencedResource(store, strict=True)
    assert relaxed.write("orders", "k1", b"a", token=5).accepted
    assert relaxed.write("orders", "k2", b"b", token=5).accepted
    refused = strict.write("orders", "k3", b"c", token=5)
    assert (refused.accepted, refused.reason) == (False, "stale token 5 <= 5")
    assert strict.write("orders", "k3", b"c", token=6).accepted
    assert relaxed.read("orders", "k3") == b"c"


def test_fenced_read_stops_an_older_holders_write(resource: FencedResource) -> None:
    resource.write("orders", "counter", b"1", token=7)
    assert resource.read("orders", "counter", token=7) == b"1"  # A (7) reads, pauses
    assert resource.read("orders", "counter", token=8) == b"1"  # B (8) reads
    late = resource.write("orders", "counter", b"2", token=7)  # A writes what it computed
    assert not late.accepted
    assert resource.write("orders", "counter", b"2", token=8).accepted
    with pytest.raises(fc.StaleTokenError):
        resource.read("orders", "counter", token=7)
    assert resource.read("orders", "missing", token=8) is None


def test_resources_and_namespaces_are_separate(etcd_single: EtcdTarget, backend: EtcdBackend) -> None:
    store = EtcdStore(backend)
    resource = FencedResource(store)
    resource.write("a", "k", b"a", token=100)
    # Names that look like paths or escapes must not reach another resource's keys.
    for name in ("b", "a:data", "%2F", "a%"):
        assert resource.write(name, "k", name.encode(), token=1).accepted, name
        assert resource.read(name, "k") == name.encode()
    assert resource.highest_token("a") == 100
    elsewhere = FencedResource(EtcdStore(backend, namespace=backend.namespace + "-x"))
    assert elsewhere.highest_token("a") is None
    with EtcdStore(etcd_single.url + f"?namespace={backend.namespace}") as own:
        assert FencedResource(own).read("a", "k") == b"a"


def test_largest_value_and_token(resource: FencedResource) -> None:
    value = bytes(range(256)) * (MAX_VALUE_SIZE // 256)
    assert resource.write("big", "k", value, token=MAX_TOKEN).accepted
    assert resource.read("big", "k") == value
    assert resource.highest_token("big") == MAX_TOKEN
    assert not resource.write("big", "k", b"x", token=MAX_TOKEN - 1).accepted


def test_unfenced_resource_writes_through(resource: FencedResource) -> None:
    unfenced = UnfencedResource(resource.store)
    resource.write("orders", "k1", b"fenced", token=9)
    assert unfenced.write("orders", "k1", b"anything", token=1).accepted
    assert resource.read("orders", "k1") == b"anything"
    assert resource.highest_token("orders") == 9


def test_racing_writers_never_go_back(etcd_single: EtcdTarget, backend: EtcdBackend) -> None:
    """Eight writers on separate connections race with interleaved tokens: a write is
    admitted only at or above the highest token so far, and the last value is the
    highest token's."""
    writers = 8
    rounds = 25
    stores = [EtcdStore(etcd_single.url + f"?namespace={backend.namespace}") for _ in range(writers)]
    outcomes: list[list[tuple[int, bool, int | None]]] = [[] for _ in range(writers)]
    start = threading.Barrier(writers)

    def write(index: int) -> None:
        resource = FencedResource(stores[index])
        tokens = [index + writers * r for r in range(rounds)]
        random.Random(index).shuffle(tokens)
        start.wait()
        for token in tokens:
            result = resource.write("race", "k", str(token).encode(), token=token)
            outcomes[index].append((token, result.accepted, result.highest_token))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        for token, accepted, highest in (o for per in outcomes for o in per):
            assert accepted == (highest is None or token >= highest), (token, accepted, highest)
        top = writers * rounds - 1
        resource = FencedResource(stores[0])
        assert resource.highest_token("race") == top
        assert resource.read("race", "k") == str(top).encode()
    finally:
        for store in stores:
            store.close()


def test_store_needs_an_etcd_backend() -> None:
    with pytest.raises(fc.InvalidArgumentType):
        EtcdStore(42)
    with fc.connect("memory://store") as memory, pytest.raises(fc.InvalidArgumentType):
        EtcdStore(memory)
    with pytest.raises(fc.ConfigurationError, match="etcd://"):
        EtcdStore("memory://store")


class _ReplyLost(grpc.RpcError):  # type: ignore[misc]  # grpc is untyped
    """What grpc raises when the connection drops after a request was sent (a grpc.Call
    with status UNAVAILABLE)."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "Socket closed"


grpc.Call.register(_ReplyLost)


def test_a_write_whose_reply_was_lost_is_outcome_unknown(backend: EtcdBackend,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 item 2's audit. The write's transaction reaches etcd and is applied, but
    its reply is lost with the connection (raised at grpc's edge after the real call):
    the store must say neither accepted nor refused, but BackendUnavailable ("may have
    been applied"), and must not send the write again."""
    store = EtcdStore(backend)
    resource = FencedResource(store)
    resource.write("orders", "k", b"before", token=3).raise_for_status()
    conn = backend._conn
    real_stub = conn._stub
    sent: list[object] = []

    class _Stub:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.inner, name)
            if name != "Txn":
                return method

            def txn(request: Any, **kwargs: Any) -> Any:
                method(request, **kwargs)  # applied by the real server
                sent.append(request)
                raise _ReplyLost()

            return txn

    monkeypatch.setattr(conn, "_stub", lambda index, service: _Stub(real_stub(index, service)))
    with pytest.raises(fc.BackendUnavailable, match="may have been applied"):
        resource.write("orders", "k", b"after", token=5)
    monkeypatch.undo()
    assert len(sent) == 1, "a write whose outcome was unknown was sent again"
    assert resource.read("orders", "k") == b"after"  # it was in fact applied
    assert resource.highest_token("orders") == 5
