"""Real Redis for the Redis tests, started once per session.

- ``redis_server``: one redis-server (Debian's package) on loopback, with AOF and
  ``appendfsync always``, its data on a tmpfs when there is one (fsync is then cheap).

Each test gets a fresh namespace (``BackendFixtures.namespace``), so tests never see
each other's keys. Tests that kill, pause or restart Redis start their own servers.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from fencing_coord.config import connect
from fencing_coord.interface import LockBackend
from fencing_coord.servers.redis import INSTALL_HINT, RedisServer
from fencing_coord.testing import BackendFixtures

#: Where throwaway servers keep their data: a tmpfs if the machine has one.
DATA_ROOT = "/dev/shm" if Path("/dev/shm").is_dir() else None


def require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip(f"redis-server is not on PATH; install it: {INSTALL_HINT}")


def own_server(**options: Any) -> RedisServer:
    """A RedisServer of a test's own (not started), its data on the tmpfs."""
    require_redis_server()
    return RedisServer(temp_root=DATA_ROOT, **options)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server with AOF (fsync always) for the whole session."""
    with own_server() as server:
        yield server


def raw_client(server: RedisServer) -> Any:
    """An out-of-band redis-py client (the tests' stand-in for an operator); typed Any:
    redis-py's own types make every reply a union."""
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=10)


def expire_session(server: RedisServer, backend: LockBackend) -> int:
    """Delete every contender hash of ``backend``'s session from another client, as if
    Redis had expired them (nobody is told); return how many there were."""
    session = backend.session_id  # type: ignore[attr-defined]
    client = raw_client(server)
    try:
        pattern = f"/fencing-coord/{backend.namespace}/*/e/{session}.*"
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


class RedisFixtures(BackendFixtures):
    """BackendFixtures on the session's Redis server."""

    #: Short leases so that losses are noticed quickly, as on etcd; long enough that a
    #: keepalive thread starved on a busy machine does not lose a grant.
    ttl = 3.0

    @pytest.fixture(autouse=True)
    def _redis_target(self, redis_server: RedisServer) -> None:
        self.server = redis_server
        # For the suite's tests that start client processes: the URL they connect to.
        self.backend_url = redis_server.url

    def connect(self, **options: Any) -> LockBackend:
        options.setdefault("ttl", self.ttl)
        return connect(self.server.url, **options)

    def expire(self, backend: LockBackend) -> None:
        """Delete the backend's contenders from another client: the backend learns of
        it at its next keepalive (within ttl/3)."""
        expire_session(self.server, backend)
