"""Faults with holders on the asyncio API (tests/aio_holder.py), on real etcd processes:

(a) an async holder process is SIGSTOPped past its TTL: another client acquires and
    writes; the holder resumes, its late write is refused by the gate, and it sees ``lost``;
(b) the cluster leader is SIGKILLed while async workers contend for the lock: service
    resumes, tokens keep increasing, no increment is lost, the gate's history is in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import fencing_coord as fc
from fencing_coord.servers.etcd import EtcdCluster

from ..faults import AIO_HOLDER, Workers, check_contended_history, each_member_first, pause_holder_past_its_ttl
from .conftest import EtcdTarget, require_etcd_binary

pytestmark = [pytest.mark.etcd, pytest.mark.slow]


@pytest.fixture
def namespace() -> str:
    return f"aio-faults-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("store_kind", ["sqlite", "etcd"])
def test_paused_async_holder_is_refused_and_sees_lost(
    etcd_single: EtcdTarget, tmp_path: Path, namespace: str, store_kind: str
) -> None:
    with fc.connect(etcd_single.url, ttl=2, namespace=namespace) as successor:
        run = pause_holder_past_its_ttl(successor, etcd_single.url, store_kind, tmp_path, ttl=2, namespace=namespace,
                                        program=AIO_HOLDER)
        assert run.late["lost"] is True
        assert run.late["lost_reason"].startswith("lease expired")
        assert run.lost["reason"].startswith("lease expired")
        successor.release(run.grant)


@pytest.fixture
def own_cluster() -> Iterator[EtcdCluster]:
    """A 3-member cluster of this test's own (it kills members)."""
    require_etcd_binary()
    with EtcdCluster(size=3) as cluster:
        yield cluster


def test_leader_killed_while_async_workers_contend(own_cluster: EtcdCluster, tmp_path: Path, namespace: str) -> None:
    db = tmp_path / "state.db"
    urls = [own_cluster.url_of(*members) for members in each_member_first(own_cluster.members)]
    with Workers(urls, db, ttl=5, namespace=namespace, program=AIO_HOLDER) as workers:
        workers.go()
        workers.run_until(15)
        own_cluster.kill(own_cluster.leader())
        at_kill = len(workers.progress)
        workers.run_until(at_kill + 15)  # service resumes without the old leader
        workers.stop()
    check_contended_history(db, workers.progress, at_kill, after=15, workers=3)
