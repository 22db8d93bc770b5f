"""Servers for the command-line tests, started once per session.

From the binaries on PATH (skipped with the install command when missing), or, with
``FENCING_COORD_TESTCONTAINERS=1``, in Docker containers (skipped with the reason when no
Docker engine is reachable).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest

from fencing_coord.devservers import INSTALL_COMMAND
from fencing_coord.testing import containers


@pytest.fixture(scope="session")
def etcd_url() -> Iterator[str]:
    """The URL of a single etcd node for the whole session."""
    if containers.enabled():
        containers.require_docker()
        with containers.etcd_container() as url:
            yield url
        return
    if shutil.which("etcd") is None:
        pytest.skip(f"etcd is not on PATH; install it: {INSTALL_COMMAND}")
    from fencing_coord.servers.etcd import EtcdServer

    with EtcdServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def zookeeper_url() -> Iterator[str]:
    """The URL of a standalone ZooKeeper for the whole session."""
    if containers.enabled():
        containers.require_docker()
        with containers.zookeeper_container() as url:
            yield url
        return
    if shutil.which("java") is None:
        pytest.skip(f"java is not on PATH; install it: {INSTALL_COMMAND}")
    from fencing_coord.errors import ConfigurationError
    from fencing_coord.servers.zookeeper import ZooKeeperServer, classpath

    try:
        classpath()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    with ZooKeeperServer() as server:
        yield server.url


@pytest.fixture
def server_binaries() -> None:
    """Skip, naming the packages to install, unless etcd, java and ZooKeeper's jars are
    here (for tests that start servers themselves, through the command line)."""
    from fencing_coord.devservers import MissingSoftware, require_servers

    try:
        require_servers(etcd=True, zookeeper=True)
    except MissingSoftware as exc:
        pytest.skip(str(exc))


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"cli-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The URL of a PostgreSQL server for the whole session (``$FENCING_COORD_PG_DSN``,
    a libpq URL, when given; else started from the local binaries)."""
    given = os.environ.get("FENCING_COORD_PG_DSN")
    if given:
        yield given
        return
    from fencing_coord.servers.postgres import FAST_SETTINGS, PostgresServer

    with PostgresServer(settings=FAST_SETTINGS) as server:
        yield server.dsn


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """A URL whose ``search_path`` is a fresh schema of this test's own."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in postgres_server_url else "?"
    return f"{postgres_server_url}{separator}options=-csearch_path%3D{schema}"
