"""AsyncZooKeeperStore behind the async gate."""

from __future__ import annotations

import pytest

from fencing_coord.backends.zookeeper.aio_store import AsyncZooKeeperStore
from tests.gate.aio_service_store import late_write_is_refused

from .conftest import ZooKeeperTarget

pytestmark = pytest.mark.zookeeper


def test_a_late_write_is_refused(zk_standalone: ZooKeeperTarget) -> None:
    late_write_is_refused(zk_standalone.url, AsyncZooKeeperStore)
