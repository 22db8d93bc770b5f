"""A holder cut off from its cluster, by a full partition or by one-way loss: the
cluster expires its lease or session, a successor is granted a larger token, and when
the link heals the old holder's late write through the gate is refused and its
release() says False."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fencing_coord.gate import FencedResource
from fencing_coord.stores import SQLiteStore
from fencing_coord.testing.netlab import NetLab, Node

from ..faults import Holder
from .conftest import TTL, LabCluster

pytestmark = pytest.mark.slow

#: How a test cuts the holder's node off: (lab, holder node, cluster).
Cut = Callable[[NetLab, Node, LabCluster], None]


def full_partition(lab: NetLab, holder: Node, cluster: LabCluster) -> None:
    lab.isolate(holder)


def holder_to_cluster_lost(lab: NetLab, holder: Node, cluster: LabCluster) -> None:
    """What the holder sends to the members is lost; what they send still arrives."""
    lab.drop(holder, cluster.nodes)


def cluster_to_holder_lost(lab: NetLab, holder: Node, cluster: LabCluster) -> None:
    """What the members send to the holder is lost; what it sends still arrives."""
    for member in cluster.nodes:
        lab.drop(member, [holder])


@pytest.mark.parametrize("cut", [full_partition, holder_to_cluster_lost, cluster_to_holder_lost])
def test_cut_off_holder_is_fenced_after_the_link_heals(cut: Cut, cluster: LabCluster, lab: NetLab,
                                                       clients: list[Node], tmp_path: Path, namespace: str) -> None:
    holder_node, successor_node = clients[0], clients[1]
    db = tmp_path / "state.db"
    holder = Holder(cluster.url, f"sqlite:{db}", ttl=TTL, namespace=namespace, prefix=holder_node.command([]))
    successor = Holder(cluster.url, f"sqlite:{db}", ttl=TTL, namespace=namespace,
                       prefix=successor_node.command([]))
    try:
        holder.send("acquire orders")
        old_token = holder.expect("acquired")["token"]
        holder.send("write orders k1 from-holder")
        assert holder.expect("write")["accepted"] is True

        cut(lab, holder_node, cluster)
        # Granted once the cluster has expired the cut-off holder's lease or session.
        successor.send("acquire orders")
        new_token = successor.expect("acquired")["token"]
        assert new_token > old_token
        successor.send("write orders k1 from-successor")
        assert successor.expect("write")["accepted"] is True
        # Still cut off, the holder has learnt that its grant is gone (no keepalive or
        # heartbeat answered for a whole TTL), once.
        holder.send("wait-lost")
        assert holder.expect("lost")["calls"] == 1

        lab.heal(holder_node, *cluster.nodes)
        holder.send("write orders k1 late-holder")
        late = holder.expect("write")
        assert late["accepted"] is False
        assert late["reason"] == f"stale token {old_token} < {new_token}"
        holder.send("release orders")
        assert holder.expect("released")["released"] is False
    finally:
        holder.close()
        successor.close()

    with SQLiteStore(db) as store:
        resource = FencedResource(store)
        assert resource.read("orders", "k1") == b"from-successor"
        assert resource.highest_token("orders") == new_token


def test_release_while_cut_off_never_says_true_after_a_successor(cluster: LabCluster, lab: NetLab,
                                                                 clients: list[Node], tmp_path: Path,
                                                                 namespace: str,
                                                                 request: pytest.FixtureRequest) -> None:
    """Found by the fault campaign (``--backend zookeeper --seconds 1200 --seed 201``):
    release() of a holder that cannot reach the service must not claim it released the
    lock (True) when a successor holds it: the answer is False, or BackendUnavailable
    (unknown), never True."""
    holder_node, successor_node = clients[0], clients[1]
    db = tmp_path / "state.db"
    holder = Holder(cluster.url, f"sqlite:{db}", ttl=TTL, namespace=namespace, prefix=holder_node.command([]))
    successor = Holder(cluster.url, f"sqlite:{db}", ttl=TTL, namespace=namespace,
                       prefix=successor_node.command([]))
    try:
        holder.send("acquire orders")
        old_token = holder.expect("acquired")["token"]
        lab.isolate(holder_node)
        successor.send("acquire orders")
        assert successor.expect("acquired")["token"] > old_token
        holder.send("release orders")  # still cut off
        answer = holder.expect("released")
        assert answer["released"] is not True, answer
    finally:
        holder.close()
        successor.close()
