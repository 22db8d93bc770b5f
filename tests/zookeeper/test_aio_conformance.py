"""The async conformance suite (locks and elections) on a standalone ZooKeeper and on a
3-server ensemble."""

from __future__ import annotations

import pytest

from fencing_coord.testing import AsyncElectionConformance, AsyncLockConformance

from .conftest import AsyncZooKeeperFixtures

pytestmark = pytest.mark.zookeeper


class TestAsyncZooKeeperStandalone(AsyncLockConformance, AsyncZooKeeperFixtures):
    target_fixture = "zk_standalone"


class TestAsyncZooKeeperEnsemble(AsyncLockConformance, AsyncZooKeeperFixtures):
    target_fixture = "zk_ensemble"


class TestAsyncZooKeeperElectionStandalone(AsyncElectionConformance, AsyncZooKeeperFixtures):
    target_fixture = "zk_standalone"


class TestAsyncZooKeeperElectionEnsemble(AsyncElectionConformance, AsyncZooKeeperFixtures):
    target_fixture = "zk_ensemble"
