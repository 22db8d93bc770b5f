"""Leader election on ZooKeeper: the election conformance suite on a standalone server and
on a 3-server ensemble, then what is specific to ZooKeeper (the candidate nodes, a leader
whose session is expired, observers across a lost session)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend
from fencing_coord.election import Leader
from fencing_coord.testing import ElectionConformance

from .conftest import ZooKeeperFixtures, ZooKeeperTarget, expire_session

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0


class TestZooKeeperElectionStandalone(ElectionConformance, ZooKeeperFixtures):
    target_fixture = "zk_standalone"


class TestZooKeeperElectionEnsemble(ElectionConformance, ZooKeeperFixtures):
    target_fixture = "zk_ensemble"
