"""The async conformance suite (locks and elections) on a single etcd node and on a
3-member cluster."""

from __future__ import annotations

from typing import Any

import pytest

from fencing_coord.aio import AsyncLockBackend, connect
from fencing_coord.testing import AsyncBackendFixtures, AsyncElectionConformance, AsyncLockConformance

from .conftest import EtcdTarget

pytestmark = pytest.mark.etcd


class AsyncEtcdFixtures(AsyncBackendFixtures):
    target_fixture = "etcd_single"
    ttl = 3.0

    @pytest.fixture(autouse=True)
    def _etcd_target(self, request: pytest.FixtureRequest) -> None:
        self.target: EtcdTarget = request.getfixturevalue(self.target_fixture)
        self.backend_url = self.target.url

    async def connect(self, **options: Any) -> AsyncLockBackend:
        options.setdefault("ttl", self.ttl)
        return await connect(self.target.url, **options)

    async def expire(self, backend: AsyncLockBackend) -> None:
        """Revoke the backend's lease from another client (etcd deletes its keys at once;
        the backend learns it at its next keepalive)."""
        lease_id = backend.lease_id  # type: ignore[attr-defined]
        assert lease_id is not None
        await backend._conn.call("Lease", "LeaseRevoke", _revoke(lease_id))  # type: ignore[attr-defined]


def _revoke(lease_id: int) -> Any:
    from etcd3 import etcdrpc

    return etcdrpc.LeaseRevokeRequest(ID=lease_id)


class TestAsyncEtcdSingle(AsyncLockConformance, AsyncEtcdFixtures):
    target_fixture = "etcd_single"


class TestAsyncEtcdCluster(AsyncLockConformance, AsyncEtcdFixtures):
    target_fixture = "etcd_cluster"


class TestAsyncEtcdElectionSingle(AsyncElectionConformance, AsyncEtcdFixtures):
    target_fixture = "etcd_single"


class TestAsyncEtcdElectionCluster(AsyncElectionConformance, AsyncEtcdFixtures):
    target_fixture = "etcd_cluster"
