"""etcd-specific election scenarios beyond the conformance suite: the candidate keys,
the guard that keeps a deposed leader's ``proclaim`` off its successor's key, and an
observer whose member dies."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

import fencing_coord as fc
from fencing_coord.backends.etcd import EtcdBackend, owner_guard
from fencing_coord.election import Leader
from fencing_coord.servers.etcd import EtcdCluster
from fencing_coord.testing import ObservedLeaders

from .conftest import EtcdTarget, require_etcd_binary, revoke

pytestmark = pytest.mark.etcd

PROMPT = 30.0


@pytest.fixture
def namespace() -> str:
    return f"e-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clients(etcd_single: EtcdTarget, namespace: str) -> Iterator[tuple[EtcdBackend, EtcdBackend]]:
    """Two clients of the single node in this test's namespace."""
    with fc.connect(etcd_single.url, ttl=3, namespace=namespace) as first, \
            fc.connect(etcd_single.url, ttl=3, namespace=namespace) as second:
        assert isinstance(first, EtcdBackend)
        assert isinstance(second, EtcdBackend)
        yield first, second


def test_candidate_key_layout_and_token(
    etcd_single: EtcdTarget, clients: tuple[EtcdBackend, EtcdBackend], namespace: str
) -> None:
    backend, _ = clients
    term = backend.election("scheduler").campaign(timeout=PROMPT, value=b"http://a:8080")
    client = etcd_single.client()
    try:
        prefix = f"/fencing-coord/{namespace}/elections/scheduler/"
        [(value, meta)] = list(client.get_prefix(prefix))
        assert meta.key.decode() == f"{prefix}{backend.lease_id:x}-0"
        assert meta.lease_id == backend.lease_id
        identity = backend.identity.encode()
        assert value == b"%d:%s" % (len(identity), identity) + b"http://a:8080"
        assert meta.create_revision == meta.mod_revision == term.token

        term.proclaim(b"http://b:8080")
        [(value, after)] = list(client.get_prefix(prefix))
        assert value.endswith(b"http://b:8080")
        assert after.create_revision == term.token < after.mod_revision
        assert backend.election("scheduler").leader() == Leader(backend.identity, b"http://b:8080", term.token)
        assert list(client.get_prefix(f"/fencing-coord/{namespace}/locks/")) == []

        # owner_guard works for a term, across its proclaims, and ends with it.
        ok, _ = client.transaction(compare=[owner_guard(term.grant)],
                                   success=[client.transactions.put(f"/app/{namespace}", "v1")], failure=[])
        assert ok
        term.resign()
        late, _ = client.transaction(compare=[owner_guard(term.grant)],
                                     success=[client.transactions.put(f"/app/{namespace}", "v2")], failure=[])
        assert not late
    finally:
        client.close()


def test_deposed_leader_cannot_proclaim(etcd_single: EtcdTarget, clients: tuple[EtcdBackend, EtcdBackend]) -> None:
    backend, other = clients
    old = backend.election("scheduler").campaign(timeout=PROMPT, value=b"old")
    lost = threading.Event()
    old.on_lost(lambda term: lost.set())
    revoke(etcd_single, backend)  # the leader is paused past its TTL: etcd drops its key

    new = other.election("scheduler").campaign(timeout=PROMPT, value=b"new")
    assert new.token > old.token
    successor = Leader(other.identity, b"new", new.token)
    # The deposed leader proclaims before (or after) its keepalive tells it: the guard
    # on its key's create revision refuses it in etcd either way.
    with pytest.raises(fc.LockLost):
        backend._proclaim(old.grant, b"stale")
    assert old.lost
    assert lost.wait(PROMPT)
    with pytest.raises(fc.LockLost):
        old.proclaim(b"stale")
    assert other.election("scheduler").leader() == successor
    assert old.resign() is False
    assert other.election("scheduler").leader() == successor
    assert not new.lost


def test_a_foreign_key_in_the_election_is_reported_not_misread(
    etcd_single: EtcdTarget, clients: tuple[EtcdBackend, EtcdBackend], namespace: str
) -> None:
    """Another program's key under the election's prefix is not a candidate record: the
    leader read says so (as on ZooKeeper) instead of passing its bytes off as an identity."""
    backend, _ = clients
    client = etcd_single.client()
    try:
        client.put(f"/fencing-coord/{namespace}/elections/scheduler/foreign", b"not a record")
        with pytest.raises(fc.BackendUnavailable, match="candidate record"):
            backend.election("scheduler").leader()
    finally:
        client.close()


def test_observer_survives_the_death_of_its_member(namespace: str) -> None:
    require_etcd_binary()
    with EtcdCluster(size=3) as cluster:
        victim, *others = cluster.members
        seen = ObservedLeaders()
        wait_seen = seen.wait_for

        # The watcher talks to the victim first; the candidate never does.
        with fc.connect(cluster.url_of(victim, *others), ttl=3, namespace=namespace) as watcher, \
                fc.connect(cluster.url_of(*others), ttl=3, namespace=namespace) as candidate:
            handle = watcher.election("scheduler").observe(seen)
            wait_seen(None)
            first = candidate.election("scheduler").campaign(timeout=PROMPT, value=b"1")
            wait_seen(Leader(candidate.identity, b"1", first.token))

            cluster.kill(victim)
            first.proclaim(b"2")
            wait_seen(Leader(candidate.identity, b"2", first.token))
            first.resign()
            wait_seen(None)
            handle.stop()
