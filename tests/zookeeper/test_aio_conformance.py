"""The async conformance suite (locks and elections) on a standalone ZooKeeper and on a
3-server ensemble."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fencing_coord.aio import AsyncLockBackend, connect
from fencing_coord.testing import AsyncBackendFixtures, AsyncElectionConformance, AsyncLockConformance

from .conftest import ZooKeeperTarget, expire_session

pytestmark = pytest.mark.zookeeper


class AsyncZooKeeperFixtures(AsyncBackendFixtures):
    target_fixture = "zk_standalone"
    ttl = 4.0

    @pytest.fixture(autouse=True)
    def _zk_target(self, request: pytest.FixtureRequest) -> None:
        self.target: ZooKeeperTarget = request.getfixturevalue(self.target_fixture)
        self.backend_url = self.target.url

    async def connect(self, **options: Any) -> AsyncLockBackend:
        options.setdefault("ttl", self.ttl)
        return await connect(self.target.url, **options)

    async def expire(self, backend: AsyncLockBackend) -> None:
        """Close the backend's session from a twin connection (a plain blocking kazoo
        client, run in a thread of the test so that it does not stall the loop)."""
        await asyncio.to_thread(expire_session, self.target, backend)


class TestAsyncZooKeeperStandalone(AsyncLockConformance, AsyncZooKeeperFixtures):
    target_fixture = "zk_standalone"


class TestAsyncZooKeeperEnsemble(AsyncLockConformance, AsyncZooKeeperFixtures):
    target_fixture = "zk_ensemble"


class TestAsyncZooKeeperElectionStandalone(AsyncElectionConformance, AsyncZooKeeperFixtures):
    target_fixture = "zk_standalone"


class TestAsyncZooKeeperElectionEnsemble(AsyncElectionConformance, AsyncZooKeeperFixtures):
    target_fixture = "zk_ensemble"
