"""Real network partitions: 3-member etcd and ZooKeeper clusters and their clients run in
network namespaces of one :class:`~fencing_coord.testing.netlab.NetLab`, and the tests
cut, drop, lose and delay packets between them.

The lab and the clusters start once per session (only when a test asks for them); each
test gets a fresh lock namespace, and every fault is healed after each test, which then
waits until its cluster serves again, so a failed test does not leave the next one a
partitioned cluster. Without root, ``ip`` or ``iptables`` the tests skip, saying which.

Nodes: ``e1..e3`` hold the etcd members, ``z1..z3`` the ZooKeeper members, ``c1..c3``
the clients (holder processes, ``tests/holder.py``).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fencing_coord.errors import ConfigurationError
from fencing_coord.servers.etcd import INSTALL_HINT as ETCD_HINT
from fencing_coord.servers.etcd import EtcdCluster, EtcdMember
from fencing_coord.servers.zookeeper import INSTALL_HINT as ZK_HINT
from fencing_coord.servers.zookeeper import ZooKeeperEnsemble, ZooKeeperMember, classpath
from fencing_coord.testing.netlab import NetLab, Node, unavailable_reason

from ..faults import each_member_first

#: Lease and session TTL of every client, seconds.
TTL = 2.0


@dataclass
class LabCluster:
    """A 3-member cluster in the lab: its URL (every member), the group that runs it
    and the lab node of each member, in member order."""

    kind: str
    url: str
    group: EtcdCluster | ZooKeeperEnsemble
    nodes: list[Node]

    def leader(self, among: list[Node] | None = None) -> Node:
        """The node of the member that leads now; with ``among``, only members on those
        nodes count (a cut-off old leader may still believe it leads)."""
        if isinstance(self.group, EtcdCluster):
            etcd = self.group.members
            found = self.group.leader(among=None if among is None else [m for m in etcd if self._on(m, among)])
            return self.nodes[etcd.index(found)]
        zk = self.group.members
        leader = self.group.leader(among=None if among is None else [m for m in zk if self._on(m, among)])
        return self.nodes[zk.index(leader)]

    def urls_each_member_first(self) -> list[str]:
        """One URL per member, each listing every member with a different one first."""
        if isinstance(self.group, EtcdCluster):
            etcd = self.group
            return [etcd.url_of(*rotation) for rotation in each_member_first(etcd.members)]
        zk = self.group
        return [zk.url_of(*rotation) for rotation in each_member_first(zk.members)]

    @staticmethod
    def _on(member: EtcdMember | ZooKeeperMember, nodes: list[Node]) -> bool:
        return any(member.host == n.address for n in nodes)

    def wait_serving(self) -> None:
        """Wait until every member serves clients again."""
        if isinstance(self.group, EtcdCluster):
            self.group.wait_healthy(timeout=60)
        else:
            self.group.wait_ready(timeout=60)


@pytest.fixture(scope="session")
def lab() -> Iterator[NetLab]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"network partition tests need the network lab: {reason}")
    with NetLab() as made:
        yield made


@pytest.fixture(scope="session")
def clients(lab: NetLab) -> list[Node]:
    """Three client nodes."""
    return [lab.add_node(f"c{i}") for i in (1, 2, 3)]


@pytest.fixture(scope="session")
def etcd_lab(lab: NetLab) -> Iterator[LabCluster]:
    if shutil.which("etcd") is None:
        pytest.skip(f"the etcd binary is not on PATH; install it: {ETCD_HINT}")
    nodes = [lab.add_node(f"e{i}") for i in (1, 2, 3)]
    with EtcdCluster(3, placements=[n.placement for n in nodes]) as cluster:
        yield LabCluster("etcd", cluster.url, cluster, nodes)


@pytest.fixture(scope="session")
def zk_lab(lab: NetLab) -> Iterator[LabCluster]:
    if shutil.which("java") is None:
        pytest.skip(f"java is not on PATH; install it: {ZK_HINT}")
    try:
        classpath()
    except ConfigurationError as exc:
        pytest.skip(str(exc))
    nodes = [lab.add_node(f"z{i}") for i in (1, 2, 3)]
    with ZooKeeperEnsemble(3, placements=[n.placement for n in nodes]) as ensemble:
        yield LabCluster("zookeeper", ensemble.url, ensemble, nodes)


@pytest.fixture(params=[pytest.param("etcd", marks=pytest.mark.etcd),
                        pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def cluster(request: pytest.FixtureRequest, lab: NetLab) -> Iterator[LabCluster]:
    """Each test runs on the etcd cluster and on the ZooKeeper ensemble; afterwards every
    fault is healed and the cluster serves again before the next test."""
    made: LabCluster = request.getfixturevalue("etcd_lab" if request.param == "etcd" else "zk_lab")
    made.wait_serving()
    yield made
    lab.heal()
    made.wait_serving()


@pytest.fixture
def namespace() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"
