"""The whole lock conformance suite on a single etcd node and on a 3-member cluster."""

from __future__ import annotations

import pytest

from fencing_coord.testing import LockBackendConformance

from .conftest import EtcdFixtures

pytestmark = pytest.mark.etcd


class TestEtcdSingle(LockBackendConformance, EtcdFixtures):
    target_fixture = "etcd_single"


class TestEtcdCluster(LockBackendConformance, EtcdFixtures):
    target_fixture = "etcd_cluster"
