"""Real etcd for the etcd tests, started once per session.

- ``etcd_single``: one node from the ``etcd`` binary on PATH, or, with
  ``FENCING_COORD_TESTCONTAINERS=1``, a single-node container (skipped with the reason
  when no Docker engine is reachable).
- ``etcd_cluster``: three members on loopback from the binary.

Each test gets a fresh namespace (``BackendFixtures.namespace``), so tests never see
each other's keys. Tests that kill, pause or restart members start their own servers.
"""

from __future__ import annotations

import gc
import importlib
import re
import shutil
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import etcd3
import pytest

import fencing_coord as fc
from fencing_coord.aio import AsyncLockBackend
from fencing_coord.aio import connect as aio_connect
from fencing_coord.backends.etcd import EtcdBackend, EtcdGrant
from fencing_coord.config import parse_url
from fencing_coord.interface import LockBackend
from fencing_coord.servers import tls
from fencing_coord.servers.etcd import INSTALL_HINT, EtcdCluster, EtcdMember, EtcdServer, EtcdTLS
from fencing_coord.testing import AsyncBackendFixtures, BackendFixtures, containers


@dataclass
class EtcdTarget:
    """What a test needs to reach one etcd deployment: its URL, and the members when
    they run here as processes (None for a container)."""

    url: str
    cluster: EtcdCluster | None = None

    def client(self) -> Any:
        """A python3-etcd3 client on the first member: an independent, out-of-band
        client (the tests' stand-in for an operator or another application)."""
        host, port = parse_url(self.url).hosts[0]
        return etcd3.client(host=host, port=port, timeout=10)


def require_etcd_binary() -> None:
    if shutil.which("etcd") is None:
        pytest.skip(f"the etcd binary is not on PATH; install it: {INSTALL_HINT}")


def require_etcdctl() -> str:
    path = shutil.which("etcdctl")
    if path is None:
        pytest.skip(f"etcdctl is not on PATH; install it: {INSTALL_HINT}")
    return path


@pytest.fixture(scope="session")
def etcd_single() -> Iterator[EtcdTarget]:
    """A single etcd node for the whole session."""
    if containers.enabled():
        containers.require_docker()
        with containers.etcd_container() as url:
            yield EtcdTarget(url)
        return
    require_etcd_binary()
    with EtcdServer() as server:
        yield EtcdTarget(server.url, server)


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdTarget]:
    """A 3-member etcd cluster on loopback for the whole session."""
    require_etcd_binary()
    with EtcdCluster(size=3) as cluster:
        yield EtcdTarget(cluster.url, cluster)


def revoke(target: EtcdTarget, backend: LockBackend) -> int:
    """Revoke ``backend``'s lease from another client; return the lease id."""
    assert isinstance(backend, EtcdBackend)
    lease_id: int | None = backend.lease_id
    assert lease_id is not None, "the backend has no lease to revoke"
    revoke_lease(target, lease_id)
    return lease_id


def revoke_lease(target: EtcdTarget, lease_id: int) -> None:
    """Revoke lease ``lease_id`` from another client (blocking: from a thread in asyncio tests)."""
    client = target.client()
    try:
        client.revoke_lease(lease_id)
    finally:
        client.close()


_STARTED = re.compile(r'^grpc_server_started_total\{grpc_method="(\w+)",grpc_service="([\w.]+)"[^}]*\} (\d+)', re.M)


def rpc_counts(member: EtcdMember) -> Counter[str]:
    """How many RPCs of each method ``member`` has started so far (its /metrics)."""
    import urllib.request

    with urllib.request.urlopen(member.client_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return Counter({method: int(count) for method, service, count in _STARTED.findall(text)
                    if service.startswith("etcdserverpb.")})


#: ``connect(**options)``, the ``connect`` fixture's maker.
Connect = Callable[..., EtcdBackend]


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def connect(etcd_single: EtcdTarget, namespace: str) -> Iterator[Connect]:
    """``connect(**options)``: clients of the single node in this test's namespace (ttl 3
    unless given), closed after the test."""
    made: list[EtcdBackend] = []

    def make(**options: object) -> EtcdBackend:
        options.setdefault("namespace", namespace)
        options.setdefault("ttl", 3)
        backend = fc.connect(etcd_single.url, **options)
        assert isinstance(backend, EtcdBackend)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def member(etcd_single: EtcdTarget) -> EtcdMember:
    """The single node's member, for tests that read its /metrics (skipped on a container)."""
    if etcd_single.cluster is None:
        pytest.skip("counts requests on the server's /metrics; not available for a container")
    return etcd_single.cluster.members[0]


def watch_count(member: EtcdMember) -> int:
    """How many watches ``member`` serves now (its /metrics gauge)."""
    with urllib.request.urlopen(member.client_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^etcd_debugging_mvcc_watcher_total (\d+)", text, re.M)
    assert found is not None, "etcd reports no etcd_debugging_mvcc_watcher_total"
    return int(found.group(1))


_WATCH_RECEIVED = re.compile(
    r'^grpc_server_msg_received_total\{grpc_method="Watch",grpc_service="etcdserverpb\.Watch"[^}]*\} (\d+)', re.M)


def watch_requests(member: EtcdMember) -> int:
    """How many watch requests (creates, cancels) ``member`` has received so far."""
    with urllib.request.urlopen(member.client_url + "/metrics", timeout=5) as response:
        found = _WATCH_RECEIVED.search(response.read().decode())
    assert found is not None, "etcd's /metrics no longer count Watch messages received"
    return int(found.group(1))


def live_messages(kind: type | None = None) -> int:
    """How many protobuf messages (of class ``kind``, or any) are alive now, after a
    collection: their memory is C memory (upb arenas), which tracemalloc does not see."""
    message = importlib.import_module("google.protobuf.message").Message  # protobuf has no type stubs here
    gc.collect()
    return sum(isinstance(o, message) and (kind is None or type(o) is kind) for o in gc.get_objects())


def acquire_watched(member: EtcdMember, backend: EtcdBackend, name: str) -> EtcdGrant:
    """``backend``'s grant of ``name`` (30 s at most), returned once ``member`` serves
    its held key's watch, which begins once the grant was held 0.1 s: watches and
    streams counted afterwards are other clients'."""
    before = watch_count(member)
    grant = backend.acquire(name, timeout=30.0)
    assert isinstance(grant, EtcdGrant)
    deadline = time.monotonic() + 30.0
    while watch_count(member) < before + 1:
        assert time.monotonic() < deadline, "the held key was never watched"
        time.sleep(0.01)  # polling the server's gauge: no event tells of it
    return grant


class OnEtcd:
    """Mixin of the fixture classes (blocking and async): ``target_fixture`` names the
    session fixture providing the :class:`EtcdTarget`."""

    target_fixture = "etcd_single"
    #: Short leases so that losses are noticed quickly (etcd's minimum is 2 s).
    ttl: ClassVar[float] = 3.0

    @pytest.fixture(autouse=True)
    def _etcd_target(self, request: pytest.FixtureRequest) -> None:
        self.target: EtcdTarget = request.getfixturevalue(self.target_fixture)
        # For the suite's tests that start client processes: the URL they connect to.
        # (BackendFixtures declares backend_url a ClassVar; ours is known per session.)
        self.backend_url = self.target.url


class EtcdFixtures(OnEtcd, BackendFixtures):
    """BackendFixtures on a real etcd."""

    def connect(self, **options: Any) -> LockBackend:
        from fencing_coord.config import connect

        options.setdefault("ttl", self.ttl)
        return connect(self.target.url, **options)

    def expire(self, backend: LockBackend) -> None:
        """Revoke the backend's lease from another client: etcd deletes its keys at
        once, and the backend learns of it at its next keepalive (within ttl/3)."""
        revoke(self.target, backend)


class AsyncEtcdFixtures(OnEtcd, AsyncBackendFixtures):
    """AsyncBackendFixtures on a real etcd."""

    async def connect(self, **options: Any) -> AsyncLockBackend:
        options.setdefault("ttl", self.ttl)
        return await aio_connect(self.target.url, **options)

    async def expire(self, backend: AsyncLockBackend) -> None:
        """Revoke the backend's lease from another client (as EtcdFixtures.expire)."""
        lease_id = backend.lease_id  # type: ignore[attr-defined]
        assert lease_id is not None, "the backend has no lease to revoke"
        await backend._conn.call("Lease", "LeaseRevoke", etcd3.etcdrpc.LeaseRevokeRequest(ID=lease_id))  # type: ignore[attr-defined]


def make_certificates(directory: Path) -> EtcdTLS:
    """A throwaway CA, and a server and a client certificate it signed, for 127.0.0.1
    (:func:`fencing_coord.servers.tls.make_certificates`; the test is skipped without
    the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not on PATH (needed to make test certificates)")
    return tls.make_certificates(directory)
