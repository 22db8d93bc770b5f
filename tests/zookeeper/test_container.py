"""The testcontainers provider: a ZooKeeper in Docker, where a Docker engine is reachable.

The whole suite runs against a container with ``FENCING_COORD_TESTCONTAINERS=1`` (see
conftest.py); this smoke test checks the provider on its own whenever Docker is there,
and is skipped with the reason otherwise.
"""

from __future__ import annotations

import uuid

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend, ZooKeeperStore
from fencing_coord.gate import FencedResource
from fencing_coord.testing import containers

pytestmark = pytest.mark.zookeeper


def test_lock_and_store_on_a_zookeeper_container() -> None:
    containers.require_docker()
    namespace = f"container-{uuid.uuid4().hex[:8]}"
    with containers.zookeeper_container() as url, \
            fc.connect(url, ttl=4, namespace=namespace) as first, \
            fc.connect(url, ttl=4, namespace=namespace) as second:
        assert isinstance(first, ZooKeeperBackend)
        grant = first.acquire("orders", timeout=30)
        assert second.try_acquire("orders") is None
        resource = FencedResource(ZooKeeperStore(first))
        assert resource.write("orders", "k1", b"v", token=grant.token).accepted
        first.release(grant)
        later = second.acquire("orders", timeout=30)
        assert later.token > grant.token
        assert not resource.write("orders", "k1", b"stale", token=grant.token - 1).accepted
