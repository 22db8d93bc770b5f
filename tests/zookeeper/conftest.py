"""Real ZooKeeper for the ZooKeeper tests, started once per session.

- ``zk_standalone``: one standalone server from Debian's ``zookeeper`` package, or, with
  ``FENCING_COORD_TESTCONTAINERS=1``, a container (skipped with the reason when no Docker
  engine is reachable).
- ``zk_ensemble``: three servers on loopback forming an ensemble.
- ``zk_tls``: a standalone server that also serves TLS on its ``secureClientPort`` and
  requires client certificates (a throwaway CA in a temporary directory); its ``url`` is
  the ``zookeepers://`` one, its ``hosts`` the plain port (for out-of-band clients).

Servers run with ``tickTime`` 200 ms, so sessions may be as short as 0.4 s. Each test
gets a fresh namespace (``BackendFixtures.namespace``, or ``namespace`` here for tests
outside the fixture classes), so tests never see each other's znodes. Tests that restart
a standalone server start their own; the ensemble fault test kills a member of the
shared ensemble and waits until it serves again.

For tests outside the fixture classes: ``make`` (clients of the standalone server in the
test's namespace, closed after the test) and ``operator`` (a plain kazoo client acting
out of band).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from kazoo.client import KazooClient

import fencing_coord as fc
from fencing_coord.aio import AsyncLockBackend
from fencing_coord.aio import connect as aio_connect
from fencing_coord.backends.zookeeper import ZooKeeperBackend
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.config import connect, parse_url
from fencing_coord.errors import ConfigurationError
from fencing_coord.interface import LockBackend
from fencing_coord.servers.tls import make_certificates
from fencing_coord.servers.zookeeper import (
    INSTALL_HINT,
    ZooKeeperEnsemble,
    ZooKeeperServer,
    classpath,
)
from fencing_coord.testing import AsyncBackendFixtures, BackendFixtures, containers

#: ``make(url_suffix="", credentials=None, **options)``, see the ``make`` fixture.
MakeZK = Callable[..., ZooKeeperBackend]


@dataclass
class ZooKeeperTarget:
    """What a test needs to reach one ZooKeeper deployment: its URL, and the servers when
    they run here as processes (None for a container)."""

    url: str
    ensemble: ZooKeeperEnsemble | None = None

    @property
    def hosts(self) -> str:
        """The plain client ports (of a TLS server too: out-of-band clients use those)."""
        if self.ensemble is not None:
            return self.ensemble.hosts
        return ",".join(f"{h}:{p}" for h, p in parse_url(self.url).host_list(2181))

    def raw_client(self, **kwargs: Any) -> Any:
        """A started plain kazoo client: the tests' stand-in for an operator or another
        application acting out of band. The caller stops it."""
        client = KazooClient(hosts=self.hosts, **kwargs)
        client.start(timeout=30)
        return client


def require_zookeeper() -> None:
    if shutil.which("java") is None:
        pytest.skip(f"java is not on PATH; install it: {INSTALL_HINT}")
    try:
        classpath()
    except ConfigurationError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def zk_standalone() -> Iterator[ZooKeeperTarget]:
    """A standalone ZooKeeper server for the whole session."""
    if containers.enabled():
        containers.require_docker()
        with containers.zookeeper_container() as url:
            yield ZooKeeperTarget(url)
        return
    require_zookeeper()
    with ZooKeeperServer() as server:
        yield ZooKeeperTarget(server.url, server)


@pytest.fixture(scope="session")
def zk_ensemble() -> Iterator[ZooKeeperTarget]:
    """A 3-server ZooKeeper ensemble on loopback for the whole session."""
    require_zookeeper()
    with ZooKeeperEnsemble(size=3) as ensemble:
        yield ZooKeeperTarget(ensemble.url, ensemble)


@pytest.fixture(scope="session")
def zk_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperTarget]:
    """A standalone ZooKeeper server with a TLS client port that requires client
    certificates, for the whole session (``ensemble.tls``: its certificates)."""
    require_zookeeper()
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not on PATH (needed to make test certificates)")
    with ZooKeeperServer(tls=make_certificates(tmp_path_factory.mktemp("zk-certs"))) as server:
        yield ZooKeeperTarget(server.url, server)


@pytest.fixture
def namespace() -> str:
    return f"zk-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make(zk_standalone: ZooKeeperTarget, namespace: str) -> Iterator[MakeZK]:
    """``make(url_suffix="", credentials=None, **options)``: a client of the standalone
    server in this test's namespace (``credentials``: ``user:password``), closed after
    the test."""
    made: list[fc.LockBackend] = []

    def connect(suffix: str = "", credentials: str | None = None, **options: Any) -> ZooKeeperBackend:
        options.setdefault("namespace", namespace)
        options.setdefault("ttl", 4)
        url = zk_standalone.url + suffix
        if credentials is not None:
            url = url.replace("zookeeper://", f"zookeeper://{credentials}@")
        backend = fc.connect(url, **options)
        assert isinstance(backend, ZooKeeperBackend)
        made.append(backend)
        return backend

    yield connect
    for backend in made:
        backend.close()


@pytest.fixture
def clients(make: MakeZK) -> list[ZooKeeperBackend]:
    """Three independent clients (sessions) of the standalone server in this test's
    namespace, closed after the test."""
    return [make() for _ in range(3)]


@pytest.fixture
def operator(zk_standalone: ZooKeeperTarget) -> Iterator[Any]:
    """A plain kazoo client acting out of band."""
    client = zk_standalone.raw_client()
    yield client
    client.stop()
    client.close()


def expire_session(target: ZooKeeperTarget, backend: LockBackend | AsyncZooKeeperBackend) -> int:
    """End ``backend``'s session on the server now, without waiting for its timeout:
    attach a second connection to the same session (id and password) and close it, as
    ZooKeeper's FAQ describes. Returns the session id. (Blocking: from an event loop,
    call it in a thread.)"""
    assert isinstance(backend, ZooKeeperBackend | AsyncZooKeeperBackend)
    client_id = backend.kazoo_client.client_id
    assert client_id is not None, "the backend has no live session to expire"
    twin = KazooClient(hosts=target.hosts, client_id=client_id)
    twin.start(timeout=30)
    twin.stop()  # closes the session on the server: its ephemeral nodes go at once
    twin.close()
    return int(client_id[0])


class OnZooKeeper:
    """Mixin of the fixture classes (blocking and async): ``target_fixture`` names the
    session fixture providing the :class:`ZooKeeperTarget`."""

    target_fixture = "zk_standalone"
    #: Short sessions, so that losses the suite causes are noticed quickly.
    ttl: ClassVar[float] = 4.0

    @pytest.fixture(autouse=True)
    def _zk_target(self, request: pytest.FixtureRequest) -> None:
        self.target: ZooKeeperTarget = request.getfixturevalue(self.target_fixture)
        # Known only once the session fixture has started the servers; the suite's tests
        # that start client processes connect them to it.
        self.backend_url = self.target.url


class ZooKeeperFixtures(OnZooKeeper, BackendFixtures):
    """BackendFixtures on a real ZooKeeper."""

    def connect(self, **options: Any) -> LockBackend:
        options.setdefault("ttl", self.ttl)
        return connect(self.target.url, **options)

    def expire(self, backend: LockBackend) -> None:
        """Close the backend's session from a twin connection: ZooKeeper deletes its
        ephemeral nodes at once, and the backend learns it (LOST) when it reconnects."""
        expire_session(self.target, backend)


class AsyncZooKeeperFixtures(OnZooKeeper, AsyncBackendFixtures):
    """AsyncBackendFixtures on a real ZooKeeper."""

    async def connect(self, **options: Any) -> AsyncLockBackend:
        options.setdefault("ttl", self.ttl)
        return await aio_connect(self.target.url, **options)

    async def expire(self, backend: AsyncLockBackend) -> None:
        """As ZooKeeperFixtures.expire, from a thread of the test (a plain blocking kazoo
        client would stall the loop)."""
        await asyncio.to_thread(expire_session, self.target, backend)


@pytest.fixture
def local(zk_standalone: ZooKeeperTarget) -> ZooKeeperTarget:
    """The standalone server, when this run started it: its four-letter words (the
    server's watch table, its counters) can be read. Skips otherwise."""
    if zk_standalone.ensemble is None:
        pytest.skip("needs the server's four-letter words (local server)")
    return zk_standalone
