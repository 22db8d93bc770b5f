"""Faults with holders on the asyncio API (tests/aio_holder.py), on real ZooKeeper:

(a) an async holder process is SIGSTOPped past its session timeout: another client
    acquires and writes; the holder resumes, its late write is refused, it sees ``lost``;
(b) the ensemble's leader is SIGKILLed while async workers contend for the lock: service
    resumes, tokens keep increasing, no increment is lost, the gate's history is in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import fencing_coord as fc
from fencing_coord.servers.zookeeper import ZooKeeperEnsemble

from ..faults import AIO_HOLDER, Workers, check_contended_history, each_member_first, pause_holder_past_its_ttl
from .conftest import ZooKeeperTarget, require_zookeeper

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


@pytest.fixture
def namespace() -> str:
    return f"aio-faults-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("store_kind", ["sqlite", "zookeeper"])
def test_paused_async_holder_is_refused_and_sees_lost(
    zk_standalone: ZooKeeperTarget, tmp_path: Path, namespace: str, store_kind: str
) -> None:
    with fc.connect(zk_standalone.url, ttl=4, namespace=namespace) as successor:
        run = pause_holder_past_its_ttl(successor, zk_standalone.url, store_kind, tmp_path, ttl=1.5,
                                        namespace=namespace, program=AIO_HOLDER)
        assert run.lost["reason"] == "session expired"
        assert successor.release(run.grant) is True


@pytest.fixture
def own_ensemble() -> Iterator[ZooKeeperEnsemble]:
    """A 3-server ensemble of this test's own (it kills the leader)."""
    require_zookeeper()
    with ZooKeeperEnsemble(size=3) as ensemble:
        yield ensemble


def test_leader_killed_while_async_workers_contend(
    own_ensemble: ZooKeeperEnsemble, tmp_path: Path, namespace: str
) -> None:
    db = tmp_path / "state.db"
    leader = own_ensemble.leader()
    urls = [own_ensemble.url_of(*members) + "?randomize_hosts=false"
            for members in each_member_first(own_ensemble.members)]
    with Workers(urls, db, ttl=6, namespace=namespace, program=AIO_HOLDER) as workers:
        workers.go()
        workers.run_until(15)
        own_ensemble.kill(leader)
        at_kill = len(workers.progress)
        workers.run_until(at_kill + 15)  # service resumes without the old leader
        workers.stop()
    check_contended_history(db, workers.progress, at_kill, after=15, workers=3)
