"""The whole lock and election conformance suites on a single etcd node and on a
3-member cluster."""

from __future__ import annotations

import pytest

from fencing_coord.testing import ElectionConformance, LockBackendConformance

from .conftest import EtcdFixtures

pytestmark = pytest.mark.etcd


class TestEtcdSingle(LockBackendConformance, EtcdFixtures):
    target_fixture = "etcd_single"


class TestEtcdCluster(LockBackendConformance, EtcdFixtures):
    target_fixture = "etcd_cluster"


class TestEtcdElectionSingle(ElectionConformance, EtcdFixtures):
    target_fixture = "etcd_single"


class TestEtcdElectionCluster(ElectionConformance, EtcdFixtures):
    target_fixture = "etcd_cluster"
