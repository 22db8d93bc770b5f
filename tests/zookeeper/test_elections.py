"""Leader election on ZooKeeper: the election conformance suite on a standalone server and
on a 3-server ensemble, then what is specific to ZooKeeper (the candidate nodes, a leader
whose session is expired, observers across a lost session)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.election import Leader
from fencing_coord.spi import decode_candidate, encode_candidate
from fencing_coord.testing import ElectionConformance, ObservedLeaders

from .conftest import MakeZK, ZooKeeperFixtures, ZooKeeperTarget, expire_session

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0


class ElectionFixtures(ZooKeeperFixtures):
    # A killed candidate's node lives until ZooKeeper expires its session, and the
    # candidate-process test kills two leaders in turn: shorter sessions than the lock
    # suite's keep it at about 2 x 2 s.
    ttl = 2.0


class TestZooKeeperElectionStandalone(ElectionConformance, ElectionFixtures):
    target_fixture = "zk_standalone"


class TestZooKeeperElectionEnsemble(ElectionConformance, ElectionFixtures):
    target_fixture = "zk_ensemble"


# -- what is specific to ZooKeeper (``make``, ``operator``: conftest.py) --------------------------


@pytest.mark.parametrize(("identity", "value"), [
    ("host:1:abc", b""), ("12:34", b"56:78"), ("ünï", b"\x00\xff:"), ("", b"only value"),
])
def test_candidate_records_round_trip(identity: str, value: bytes) -> None:
    assert decode_candidate(encode_candidate(identity, value), "/x") == (identity, value)


@pytest.mark.parametrize("data", [b"", b"no colon", b"x:abc", b"9:short", b"-1:a", b"2:\xff\xfe"])
def test_malformed_candidate_records_are_refused(data: bytes) -> None:
    with pytest.raises(fc.BackendUnavailable, match="candidate record"):
        decode_candidate(data, "/x")


def test_candidate_nodes_hold_identity_and_value_and_the_token_is_their_czxid(
    make: MakeZK, operator: Any, namespace: str
) -> None:
    backend, watcher = make(identity="node:a"), make()
    seen = ObservedLeaders()
    handle = watcher.election("scheduler").observe(seen)
    seen.wait_for(None)
    lock = backend.acquire("scheduler", timeout=PROMPT)
    term = backend.election("scheduler").campaign(timeout=PROMPT, value=b"http://a:8080")

    parent = backend.election_path("scheduler")
    assert parent == f"/fencing-coord/{namespace}/elections/scheduler"
    [node] = operator.get_children(parent)
    assert node.startswith("_c_")
    assert "-candidate__lock__" in node
    data, stat = operator.get(f"{parent}/{node}")
    assert data == b"6:node:ahttp://a:8080"
    assert stat.czxid == term.token != lock.token
    assert stat.ephemeralOwner == backend.session_id
    assert [("-lock-" in n) for n in operator.get_children(backend.lock_path("scheduler"))] == [True]
    seen.wait_for(Leader("node:a", b"http://a:8080", term.token))

    # proclaim rewrites the node: same czxid (token), new data, and observers are told.
    term.proclaim(b":\x00binary:")
    data, after = operator.get(f"{parent}/{node}")
    assert (data, after.czxid, after.version) == (b"6:node:a:\x00binary:", term.token, stat.version + 1)
    proclaimed = Leader("node:a", b":\x00binary:", term.token)
    assert watcher.election("scheduler").leader() == proclaimed
    seen.wait_for(proclaimed)

    term.resign()
    seen.wait_for(None)
    assert operator.get_children(parent) == [], "resigning deletes the candidate node"
    assert operator.exists(parent) is not None, "the election's parent is never deleted"
    handle.stop()
    backend.release(lock)


def test_a_foreign_node_in_the_election_is_reported_not_misread(make: MakeZK, operator: Any) -> None:
    backend = make()
    parent = backend.election_path("scheduler")
    operator.create(f"{parent}/candidate-0123456789abcdef-", b"not a record", sequence=True, ephemeral=True,
                    makepath=True)
    with pytest.raises(fc.BackendUnavailable, match="candidate record"):
        backend.election("scheduler").leader()


def test_expired_leader_loses_its_term_its_proclaim_is_refused_and_observers_end_on_the_successor(
    zk_standalone: ZooKeeperTarget, make: MakeZK
) -> None:
    leader, successor, watcher = make(), make(), make()
    seen = ObservedLeaders()
    handle = watcher.election("scheduler").observe(seen)
    old = leader.election("scheduler").campaign(timeout=PROMPT, value=b"old")
    lost = threading.Event()
    old.on_lost(lambda term: lost.set())
    seen.wait_for(Leader(leader.identity, b"old", old.token))

    old_session = expire_session(zk_standalone, leader)  # paused past its session timeout
    new = successor.election("scheduler").campaign(timeout=PROMPT, value=b"new")
    assert new.token > old.token
    current = Leader(successor.identity, b"new", new.token)
    # Before (or after) the old leader learns that its session is gone, ZooKeeper refuses
    # its proclaim: its node died with the session, and the successor's node is another.
    with pytest.raises(fc.LockLost, match="session expired"):
        leader._proclaim(old.grant, b"stale")
    assert old.wait_lost(PROMPT)
    assert lost.wait(PROMPT)
    assert old.grant.lost_reason == "session expired"
    with pytest.raises(fc.LockLost):
        old.proclaim(b"stale")
    assert old.resign() is False
    assert leader.session_id not in (None, old_session)

    assert watcher.election("scheduler").leader() == current
    seen.wait_for(current)
    handle.stop()
    tokens = [s.token for s in seen.leaders if s is not None]
    assert tokens == sorted(set(tokens))
    assert seen.leaders[-1] == current
    # The old leader's backend lives on, on a new session, and stands again behind the successor.
    with pytest.raises(fc.LockTimeout):
        leader.election("scheduler").campaign(timeout=0)
    new.resign()
    assert leader.election("scheduler").campaign(timeout=PROMPT).token > new.token


def test_an_election_created_between_the_observers_listing_and_its_exists_watch_is_still_watched(
    make: MakeZK,
) -> None:
    # An observer of an election nobody has stood in lists its parent (no node), then sets
    # an exists watch on it. When the first candidate creates the parent (and its node) in
    # between, that exists call finds the parent: its watch reports only the parent's own
    # data, never a child, so the observer must list the parent again, with a child watch.
    # The first campaign is made at that exact point, from inside the observer's exists call.
    leader, watcher = make(), make()
    parent = watcher.election_path("scheduler")
    client = watcher.kazoo_client
    real_exists = client.exists_async
    terms: list[fc.Term] = []
    campaigned = threading.Event()

    def exists_after_the_first_campaign(path: str, watch: Any = None) -> Any:
        if path == parent and not terms:
            terms.append(leader.election("scheduler").campaign(timeout=PROMPT, value=b"first"))
            campaigned.set()
        return real_exists(path, watch=watch)

    client.exists_async = exists_after_the_first_campaign
    seen = ObservedLeaders()
    handle = watcher.election("scheduler").observe(seen)
    assert campaigned.wait(PROMPT), "the observer never set an exists watch on the election"
    seen.wait_for(Leader(leader.identity, b"first", terms[0].token))
    terms[0].resign()
    seen.wait_for(None)  # timed out with only the parent's data watch set
    handle.stop()


def test_observer_sees_changes_made_while_its_own_session_was_lost(
    zk_standalone: ZooKeeperTarget, make: MakeZK
) -> None:
    first, second, watcher = make(), make(), make()
    seen = ObservedLeaders()
    handle = watcher.election("scheduler").observe(seen)
    term = first.election("scheduler").campaign(timeout=PROMPT)
    seen.wait_for(Leader(first.identity, b"", term.token))

    # The server ends the watcher's session, which drops its watches; kazoo opens a new
    # session. Changes from now on can only reach the observer if its watches are set
    # again (and it reads again) on the new session.
    expire_session(zk_standalone, watcher)
    term.resign()
    nxt = second.election("scheduler").campaign(timeout=PROMPT, value=b"second")
    seen.wait_for(Leader(second.identity, b"second", nxt.token))
    nxt.proclaim(b"still second")
    seen.wait_for(Leader(second.identity, b"still second", nxt.token))
    handle.stop()


def test_candidate_node_deleted_out_of_band_loses_the_term(make: MakeZK, operator: Any) -> None:
    backend, other = make(), make()
    term = backend.election("scheduler").campaign(timeout=PROMPT)
    parent = backend.election_path("scheduler")
    [node] = operator.get_children(parent)
    operator.delete(f"{parent}/{node}")
    assert term.wait_lost(PROMPT)
    assert term.grant.lost_reason == f"its candidate node {parent}/{node} was deleted out of band"
    with pytest.raises(fc.LockLost):
        term.proclaim(b"x")
    assert other.election("scheduler").campaign(timeout=PROMPT).token > term.token
