"""The tooz driver (``fencing-coord+etcd://``) on a real etcd."""

from __future__ import annotations

import pytest

from ..tooz_driver_cases import ToozDriverCases
from .conftest import EtcdTarget

pytestmark = pytest.mark.etcd


class TestToozOnEtcd(ToozDriverCases):
    @pytest.fixture
    def url(self, etcd_single: EtcdTarget) -> str:
        return etcd_single.url
