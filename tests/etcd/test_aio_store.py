"""AsyncEtcdStore behind the async gate."""

from __future__ import annotations

import pytest

from fencing_coord.backends.etcd.aio_store import AsyncEtcdStore
from tests.gate.aio_service_store import late_write_is_refused

from .conftest import EtcdTarget

pytestmark = pytest.mark.etcd


def test_a_late_write_is_refused(etcd_single: EtcdTarget) -> None:
    late_write_is_refused(etcd_single.url, AsyncEtcdStore)
