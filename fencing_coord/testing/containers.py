"""Real etcd and ZooKeeper servers in Docker containers, for running the test suite on a
machine with a Docker engine instead of the binaries on PATH.

Select it with ``FENCING_COORD_TESTCONTAINERS=1`` (the etcd, ZooKeeper and CLI test
conftests then start their servers here); it needs the ``testcontainers`` extra
(``pip install -e '.[dev,testcontainers]'``) and a reachable Docker engine::

    from fencing_coord.testing.containers import docker_available, etcd_container

    if docker_available():
        with etcd_container() as url:            # "etcd://127.0.0.1:32771"
            backend = fc.connect(url)

Both containers are built on testcontainers' generic
:class:`~testcontainers.core.container.DockerContainer` (:class:`DockerEtcd`,
:class:`DockerZooKeeper`) and wait until the server itself reports healthy, not only
until a port opens. Importing this module never needs Docker or testcontainers: the
container classes exist only when testcontainers is installed, and
:func:`docker_unavailable_reason` says what is missing.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import BackendUnavailable

__all__ = [
    "ENV_VAR",
    "ETCD_IMAGE",
    "ZOOKEEPER_IMAGE",
    "DockerEtcd",
    "DockerZooKeeper",
    "docker_available",
    "docker_unavailable_reason",
    "enabled",
    "etcd_container",
    "require_docker",
    "zookeeper_container",
]

#: Set to ``1`` to run the suite against containers instead of local binaries.
ENV_VAR = "FENCING_COORD_TESTCONTAINERS"
ETCD_IMAGE = "gcr.io/etcd-development/etcd:v3.5.17"
ZOOKEEPER_IMAGE = "zookeeper:3.8"
#: ZooKeeper's tickTime in the container, ms, as for the local servers
#: (:mod:`fencing_coord.servers.zookeeper`): sessions from 2 ticks (0.4 s) to 60 s.
ZOOKEEPER_TICK_MS = 200
ZOOKEEPER_MAX_SESSION_MS = 60_000
_INSTALL_HINT = "pip install -e '.[dev,testcontainers]'"

try:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import ExecWaitStrategy

    _MISSING: str | None = None
except ImportError as exc:  # the extra is optional: say how to get it when asked
    _MISSING = f"testcontainers is not installed ({exc}); run: {_INSTALL_HINT}"


def enabled() -> bool:
    """True when ``$FENCING_COORD_TESTCONTAINERS`` asks for containers (1/true/yes)."""
    return os.environ.get(ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


@functools.cache
def docker_unavailable_reason() -> str | None:
    """None when containers can be started here; otherwise why not (a sentence for a
    skip reason). Asks the engine once per process (``ping``, 5 s timeout)."""
    if _MISSING is not None:
        return _MISSING
    try:
        # Imported by name: the docker SDK ships no type stubs, and only ping() is used.
        docker = importlib.import_module("docker")
    except ImportError as exc:
        return f"the docker SDK is not installed ({exc}); run: {_INSTALL_HINT}"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except (docker.errors.DockerException, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"no Docker engine is reachable (DOCKER_HOST={os.environ.get('DOCKER_HOST', 'unset')}): {first_line}"
    return None


def docker_available() -> bool:
    """True when a Docker engine answers and testcontainers is installed."""
    return docker_unavailable_reason() is None


def require_docker() -> None:
    """In a test or fixture: skip it, with the reason, unless containers can run here."""
    reason = docker_unavailable_reason()
    if reason is not None:
        import pytest

        pytest.skip(reason)


if _MISSING is None:

    # Without the extra installed, mypy sees DockerContainer as Any (the override in
    # pyproject.toml); with it, the class is typed and the ignore is unused.
    class DockerEtcd(DockerContainer):  # type: ignore[misc,unused-ignore]
        """A single-node etcd (v3 API) in a container; ready once ``etcdctl endpoint
        health`` succeeds inside it. ``url`` is the ``etcd://`` URL to connect to."""

        CLIENT_PORT = 2379

        def __init__(self, image: str = ETCD_IMAGE) -> None:
            super().__init__(image)
            self.with_exposed_ports(self.CLIENT_PORT)
            self.with_command(
                [
                    "/usr/local/bin/etcd",
                    "--name", "etcd0",
                    "--data-dir", "/etcd-data",
                    "--listen-client-urls", f"http://0.0.0.0:{self.CLIENT_PORT}",
                    "--advertise-client-urls", f"http://127.0.0.1:{self.CLIENT_PORT}",
                    "--listen-peer-urls", "http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                    "--initial-cluster", "etcd0=http://127.0.0.1:2380",
                ]
            )
            self.waiting_for(
                ExecWaitStrategy(
                    ["/usr/local/bin/etcdctl", f"--endpoints=http://127.0.0.1:{self.CLIENT_PORT}", "endpoint", "health"]
                ).with_startup_timeout(60)
            )

        @property
        def url(self) -> str:
            host = self.get_container_host_ip()
            return f"etcd://{host}:{self.get_exposed_port(self.CLIENT_PORT)}"

    class DockerZooKeeper(DockerContainer):  # type: ignore[misc,unused-ignore]
        """A standalone ZooKeeper in a container (tickTime ``tick_ms``; sessions from 2
        ticks to 60 s; every four-letter word allowed); ready once ``zkServer.sh status``
        reports it serving. ``url`` is the ``zookeeper://`` URL."""

        CLIENT_PORT = 2181

        def __init__(self, image: str = ZOOKEEPER_IMAGE, tick_ms: int = ZOOKEEPER_TICK_MS) -> None:
            super().__init__(image)
            self.tick_ms = tick_ms
            self.with_exposed_ports(self.CLIENT_PORT)
            self.with_env("ZOO_TICK_TIME", str(tick_ms))
            # The same session bounds and four-letter words as the local servers, so a
            # test behaves the same on either.
            self.with_env("ZOO_4LW_COMMANDS_WHITELIST", "*")
            self.with_env(
                "ZOO_CFG_EXTRA",
                f"minSessionTimeout={2 * tick_ms} maxSessionTimeout={ZOOKEEPER_MAX_SESSION_MS} "
                "admin.enableServer=false",
            )
            self.waiting_for(ExecWaitStrategy(["zkServer.sh", "status"]).with_startup_timeout(60))

        @property
        def url(self) -> str:
            host = self.get_container_host_ip()
            return f"zookeeper://{host}:{self.get_exposed_port(self.CLIENT_PORT)}"


def _check() -> None:
    reason = docker_unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(f"cannot start containers: {reason}")


@contextmanager
def etcd_container(image: str = ETCD_IMAGE) -> Iterator[str]:
    """Start a single-node etcd container, yield its URL (``etcd://host:port``), and
    remove the container (and its volume) on exit.

    Raises :class:`BackendUnavailable` when Docker or testcontainers is missing (check
    :func:`docker_available` first to skip instead)."""
    _check()
    with DockerEtcd(image) as container:
        yield container.url


@contextmanager
def zookeeper_container(image: str = ZOOKEEPER_IMAGE, tick_ms: int = ZOOKEEPER_TICK_MS) -> Iterator[str]:
    """Start a standalone ZooKeeper container, yield its URL (``zookeeper://host:port``),
    and remove it on exit. Session timeouts it accepts: ``2 x tick_ms`` to 60 s.

    Raises :class:`BackendUnavailable` when Docker or testcontainers is missing."""
    _check()
    with DockerZooKeeper(image, tick_ms) as container:
        yield container.url
