"""The tooz driver (``fencing-coord+zookeeper://``) on a real ZooKeeper."""

from __future__ import annotations

import pytest

from ..tooz_driver_cases import ToozDriverCases
from .conftest import ZooKeeperTarget

pytestmark = pytest.mark.zookeeper


class TestToozOnZooKeeper(ToozDriverCases):
    ttl = 4

    @pytest.fixture
    def url(self, zk_standalone: ZooKeeperTarget) -> str:
        return zk_standalone.url
