"""Workers contending for one lock while the network misbehaves: the leader cut off in a
minority, or every link slow and lossy. The gate's history must show no increment lost
and tokens admitted only in increasing order (so no two holders' read-modify-writes were
both accepted), and the lock must keep working throughout."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from fencing_coord.testing.netlab import NetLab, Node

from ..faults import Workers, check_contended_history
from .conftest import TTL, LabCluster

pytestmark = pytest.mark.slow


def workers_on(cluster: LabCluster, clients: list[Node], db: Path, namespace: str) -> Workers:
    """One worker per client node, each starting on a different member."""
    return Workers(cluster.urls_each_member_first(), db, ttl=TTL, namespace=namespace,
                   prefixes=[c.command([]) for c in clients])


def test_leader_isolated_in_a_minority(cluster: LabCluster, lab: NetLab, clients: list[Node], tmp_path: Path,
                                       namespace: str) -> None:
    db = tmp_path / "state.db"
    with workers_on(cluster, clients, db, namespace) as workers:
        workers.go()
        workers.run_until(10)
        at_cut = len(workers.progress)
        old = cluster.leader()
        majority = [n for n in cluster.nodes if n is not old]
        lab.partition([old], [*majority, *clients])
        # The majority elects a leader of its own, and the lock keeps working.
        assert cluster.leader(among=majority) is not old
        workers.run_until(at_cut + 15)
        workers.stop()
    check_contended_history(db, workers.progress, at_cut, after=15, workers=len(clients))


def connect_time(client: Node, member: Node, port: int) -> float:
    """Seconds a TCP connect from ``client`` to ``member`` takes (one round trip)."""

    def connect() -> float:
        started = time.monotonic()
        with socket.create_connection((member.address, port), timeout=10):
            return time.monotonic() - started

    return client.call(connect)


def test_latency_and_loss_during_contention(cluster: LabCluster, lab: NetLab, clients: list[Node], tmp_path: Path,
                                            namespace: str) -> None:
    db = tmp_path / "state.db"
    port = cluster.group.members[0].client_port
    with workers_on(cluster, clients, db, namespace) as workers:
        workers.go()
        workers.run_until(5)
        at_start = len(workers.progress)
        nodes = [*cluster.nodes, *clients]
        for node in nodes:
            lab.delay(node, 40, 20)
            lab.lose(node, 0.03, incoming=False)
        # Every packet now waits 20..60 ms on the way out of each node.
        assert connect_time(clients[0], cluster.nodes[0], port) >= 0.04
        workers.run_until(at_start + 30)
        # ... and still does: no delayer gave up while the rules changed and packets flowed.
        assert [n.name for n in nodes if n.delayer is None or n.delayer.poll() is not None] == []
        assert connect_time(clients[0], cluster.nodes[0], port) >= 0.04
        workers.stop()
    check_contended_history(db, workers.progress, at_start, after=30, workers=len(clients))
