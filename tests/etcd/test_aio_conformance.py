"""The async conformance suite (locks and elections) on a single etcd node and on a
3-member cluster."""

from __future__ import annotations

import pytest

from fencing_coord.testing import AsyncElectionConformance, AsyncLockConformance

from .conftest import AsyncEtcdFixtures

pytestmark = pytest.mark.etcd


class TestAsyncEtcdSingle(AsyncLockConformance, AsyncEtcdFixtures):
    target_fixture = "etcd_single"


class TestAsyncEtcdCluster(AsyncLockConformance, AsyncEtcdFixtures):
    target_fixture = "etcd_cluster"


class TestAsyncEtcdElectionSingle(AsyncElectionConformance, AsyncEtcdFixtures):
    target_fixture = "etcd_single"


class TestAsyncEtcdElectionCluster(AsyncElectionConformance, AsyncEtcdFixtures):
    target_fixture = "etcd_cluster"
