"""The whole lock and election conformance suites on a real redis-server."""

from __future__ import annotations

import pytest

from fencing_coord.testing import ElectionConformance, LockBackendConformance

from .conftest import RedisFixtures

pytestmark = pytest.mark.redis


class TestRedisConformance(LockBackendConformance, RedisFixtures):
    pass


class TestRedisElectionConformance(ElectionConformance, RedisFixtures):
    pass
