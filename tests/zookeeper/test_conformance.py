"""The whole lock conformance suite on a standalone ZooKeeper and on a 3-server ensemble."""

from __future__ import annotations

import pytest

from fencing_coord.testing import LockBackendConformance

from .conftest import ZooKeeperFixtures

pytestmark = pytest.mark.zookeeper


class TestZooKeeperStandalone(LockBackendConformance, ZooKeeperFixtures):
    target_fixture = "zk_standalone"


class TestZooKeeperEnsemble(LockBackendConformance, ZooKeeperFixtures):
    target_fixture = "zk_ensemble"
