"""Faults on real ZooKeeper processes and real client processes.

(a) a holder process is SIGSTOPped past its session timeout: another client acquires and
    writes; the holder resumes, its write is refused by the gate, and it sees ``lost``;
(b) the ensemble leader is SIGKILLed while locks are held and contended: a holder on the
    leader reconnects to another member and keeps its grant (same session), the workers
    carry on, tokens keep increasing, the gate's history has no write out of order;
(c) a standalone server is killed and restarted on its data dir: later tokens are larger
    and a grant held across the restart survives;
(d) a session is expired on the server (a twin connection closes it): ``on_lost`` fires
    once, a waiter of that session queues again on the new one, tokens keep increasing;
(e) a lock's parent znode is deleted out of band while it is held and waited for: the
    holder is told why it lost the lock, the waiter gets it with a larger token, the
    holder's late write is refused;
(f) the server stops answering (SIGSTOP) for longer than the session timeout: the
    holder's grant is presumed lost, and the lock is free once the server is back;
(g) requests abandoned on a silent server leave nothing behind, and a release nobody
    answered is not reported as done;
(h) a holder cut off from the quorum (its only member paused) while the others expire
    its session and grant the lock to a successor: its release never says True.

Nothing here sleeps to synchronise: every wait is on a process's report, a lock grant
or an ``on_lost`` event (with a generous bound only so that a broken build fails instead
of hanging).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend
from fencing_coord.gate import FencedResource
from fencing_coord.servers import wait_until
from fencing_coord.servers.zookeeper import ZooKeeperEnsemble, ZooKeeperServer
from fencing_coord.stores import SQLiteStore

from ..faults import (
    AIO_HOLDER,
    HOLDER,
    PROMPT,
    Workers,
    check_contended_history,
    each_member_first,
    pause_holder_past_its_ttl,
)
from .conftest import ZooKeeperTarget, expire_session, require_zookeeper

pytestmark = [pytest.mark.zookeeper, pytest.mark.slow]


@pytest.fixture
def namespace() -> str:
    return f"faults-{uuid.uuid4().hex[:10]}"


def _delete_tree(client: Any, path: str) -> None:
    """What an operator's ``deleteall`` does, made atomic: delete ``path`` and its
    children in one transaction (again if a child appeared meanwhile)."""
    for _ in range(50):
        children = client.get_children(path)
        transaction = client.transaction()
        for child in children:
            transaction.delete(f"{path}/{child}")
        transaction.delete(path)
        if all(result is True for result in transaction.commit()):
            return
    raise AssertionError(f"could not delete {path}: children kept appearing")


def acquire_in_thread(backend: fc.LockBackend, name: str) -> queue.Queue[fc.Grant | BaseException]:
    """Start ``backend.acquire(name)`` in a thread and return once it is queued (its
    node exists), with the queue its grant, or what it raised, will arrive on."""
    queued = threading.Event()
    waited: queue.Queue[fc.Grant | BaseException] = queue.Queue()

    def wait() -> None:
        try:
            waited.put(backend.acquire(name, timeout=PROMPT, on_queued=queued.set))
        except BaseException as exc:  # reported to the test thread
            waited.put(exc)

    threading.Thread(target=wait, daemon=True).start()
    assert queued.wait(PROMPT)
    return waited


def _zk(backend: fc.LockBackend) -> ZooKeeperBackend:
    assert isinstance(backend, ZooKeeperBackend)
    return backend


# -- (a) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("program", [HOLDER, AIO_HOLDER], ids=["blocking", "async"])
@pytest.mark.parametrize("store_kind", ["sqlite", "zookeeper"])
def test_paused_holder_is_refused_and_sees_lost(
    zk_standalone: ZooKeeperTarget, tmp_path: Path, namespace: str, store_kind: str, program: Path
) -> None:
    with fc.connect(zk_standalone.url, ttl=4, namespace=namespace) as connected:
        successor = _zk(connected)
        run = pause_holder_past_its_ttl(successor, zk_standalone.url, store_kind, tmp_path, ttl=1.5,
                                        namespace=namespace, program=program)
        # Whichever notices first after the resume: the local rule (nothing heard for a
        # whole session timeout) or kazoo learning on reconnection that the server expired it.
        assert run.lost["reason"] == "session expired" or run.lost["reason"].startswith(
            "session presumed expired: nothing heard from ZooKeeper for the whole session timeout"), run.lost
        assert successor.release(run.grant) is True


# -- (b) ----------------------------------------------------------------------------------------


@pytest.fixture
def own_ensemble() -> Iterator[ZooKeeperEnsemble]:
    """A 3-server ensemble of this test's own (it kills the leader)."""
    require_zookeeper()
    with ZooKeeperEnsemble(size=3) as ensemble:
        yield ensemble


@pytest.mark.parametrize("program", [HOLDER, AIO_HOLDER], ids=["blocking", "async"])
def test_leader_killed_while_locks_are_held_and_contended(
    own_ensemble: ZooKeeperEnsemble, tmp_path: Path, namespace: str, program: Path
) -> None:
    db = tmp_path / "state.db"
    leader = own_ensemble.leader()
    others = [m for m in own_ensemble.members if m is not leader]
    # A holder connected to the leader (hosts in order, leader first).
    on_leader = own_ensemble.url_of(leader, *others) + "?randomize_hosts=false"
    with fc.connect(on_leader, ttl=6, namespace=namespace) as connected:
        holder = _zk(connected)
        session = holder.session_id
        assert session in leader.sessions()
        held = holder.acquire("payments", timeout=PROMPT)
        # Each worker starts on a different member, hosts in that order.
        urls = [own_ensemble.url_of(*members) + "?randomize_hosts=false"
                for members in each_member_first(own_ensemble.members)]
        with Workers(urls, db, ttl=6, namespace=namespace, program=program) as workers:
            workers.go()
            workers.run_until(15)
            own_ensemble.kill(leader)
            at_kill = len(workers.progress)
            workers.run_until(at_kill + 15)  # service resumes without the old leader

            # The holder reconnected to another member on the same session: grant kept.
            assert holder.wait_connected(PROMPT)
            assert holder.session_id == session
            assert any(session in m.sessions() for m in others)
            assert not held.lost
            assert holder.renew(held) is held
            assert holder.describe("payments").token == held.token
            assert holder.release(held) is True

            workers.stop()
    check_contended_history(db, workers.progress, at_kill, after=15, workers=3)


# -- (c) ----------------------------------------------------------------------------------------


def test_tokens_continue_upward_after_a_restart(namespace: str) -> None:
    require_zookeeper()
    with ZooKeeperServer() as server:
        # ZooKeeper 3.8.0 can leave a connection that arrives while it starts unanswered
        # (an NPE in its connection close); kazoo abandons such an attempt after
        # session timeout / number of hosts. Naming the server twice halves that, so the
        # client gets back in well within its session timeout.
        twice = f"zookeeper://{server.member.endpoint},{server.member.endpoint}?randomize_hosts=false"
        # A long session timeout: the session outlives the restart (ZooKeeper persists
        # sessions and restarts their timers when it comes back).
        with fc.connect(twice, ttl=20, namespace=namespace) as connected:
            backend = _zk(connected)
            session = backend.session_id
            before = []
            for _ in range(3):
                grant = backend.acquire("orders", timeout=PROMPT)
                before.append(grant.token)
                backend.release(grant)
            held = backend.acquire("payments", timeout=PROMPT)

            server.kill(server.member)  # a crash, not a shutdown
            server.restart(server.member)
            assert backend.wait_connected(PROMPT)

            grant = backend.acquire("orders", timeout=PROMPT)
            assert grant.token > max(before)
            assert backend.release(grant)
            assert backend.session_id == session
            assert not held.lost
            assert backend.describe("payments").token == held.token
            assert backend.release(held) is True
        with fc.connect(server.url, ttl=20, namespace=namespace) as fresh:
            assert fresh.acquire("orders", timeout=PROMPT).token > grant.token


# -- (d) ----------------------------------------------------------------------------------------


def test_forced_session_expiry_fires_on_lost_once(zk_standalone: ZooKeeperTarget, namespace: str) -> None:
    with fc.connect(zk_standalone.url, ttl=4, namespace=namespace) as connected, \
            fc.connect(zk_standalone.url, ttl=4, namespace=namespace) as other:
        backend = _zk(connected)
        grant = backend.acquire("orders", timeout=PROMPT)
        blocker = other.acquire("payments", timeout=PROMPT)
        waited = acquire_in_thread(backend, "payments")
        calls: list[str | None] = []
        fired = threading.Event()

        def on_lost(g: fc.Grant) -> None:
            calls.append(g.lost_reason)
            fired.set()

        grant.on_lost(on_lost)
        old_session = expire_session(zk_standalone, backend)

        # ZooKeeper deleted the holder's node at once: the lock is free for others.
        taken = other.acquire("orders", timeout=PROMPT)
        assert taken.token > grant.token
        assert fired.wait(PROMPT)
        assert grant.wait_lost(PROMPT)
        assert calls == ["session expired"]
        with pytest.raises(fc.LockLost):
            backend.renew(grant)
        assert backend.release(grant) is False
        assert calls == ["session expired"], "on_lost ran more than once"
        other.release(taken)

        # The waiter's node died with the session; it queued again on the new session.
        assert backend.wait_connected(PROMPT)
        assert backend.session_id not in (None, old_session)
        assert other.release(blocker) is True
        got = waited.get(timeout=PROMPT)
        assert isinstance(got, fc.Grant), got
        assert got.token > blocker.token
        assert not got.lost
        backend.release(got)

        again = backend.acquire("orders", timeout=PROMPT)
        assert again.token > taken.token
        assert not again.lost


# -- (e) ----------------------------------------------------------------------------------------


def test_parent_deleted_out_of_band(
    zk_standalone: ZooKeeperTarget, tmp_path: Path, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fencing_coord.backends.zookeeper")
    with fc.connect(zk_standalone.url, ttl=4, namespace=namespace) as connected, \
            fc.connect(zk_standalone.url, ttl=4, namespace=namespace) as waiter, \
            SQLiteStore(tmp_path / "state.db") as store:
        holder = _zk(connected)
        resource = FencedResource(store)
        grant = holder.acquire("orders", timeout=PROMPT)
        assert resource.write("orders", "k1", b"holder", token=grant.token).accepted
        waited = acquire_in_thread(waiter, "orders")

        parent = holder.lock_path("orders")
        operator = zk_standalone.raw_client()
        try:
            _delete_tree(operator, parent)
        finally:
            operator.stop()
            operator.close()

        # The waiter queues in the parent it recreates and gets a larger token.
        successor = waited.get(timeout=PROMPT)
        assert isinstance(successor, fc.Grant), successor
        assert successor.token > grant.token
        assert resource.write("orders", "k1", b"successor", token=successor.token).accepted

        # The holder is told, with the reason.
        assert grant.wait_lost(PROMPT)
        reason = grant.lost_reason or ""
        assert reason.startswith(f"its lock node {parent}/"), reason
        assert "deleted out of band" in reason, reason
        assert f"parent znode {parent}" in reason, reason
        with pytest.raises(fc.LockLost):
            holder.renew(grant)

        late = resource.write("orders", "k1", b"late-holder", token=grant.token)
        assert not late.accepted
        assert late.reason == f"stale token {grant.token} < {successor.token}"
        assert resource.read("orders", "k1") == b"successor"

        waiter.release(successor)
        again = holder.acquire("orders", timeout=PROMPT)
        assert again.token > successor.token
        assert any("deleted and created again out of band" in r.getMessage() for r in caplog.records)
        holder.release(again)


# -- (f) ----------------------------------------------------------------------------------------


def test_server_silent_past_the_session_timeout_presumes_the_grant_lost(namespace: str) -> None:
    require_zookeeper()
    with ZooKeeperServer() as server, fc.connect(server.url, ttl=1.5, namespace=namespace) as connected:
        backend = _zk(connected)
        grant = backend.acquire("orders", timeout=PROMPT)
        server.pause(server.member)
        try:
            # No answer for the whole session timeout: the session may be gone.
            assert grant.wait_lost(PROMPT)
            assert (grant.lost_reason or "").startswith("session presumed expired")
            assert backend.suspended
        finally:
            server.resume(server.member)
        # Whether the server expires the session or the client gets back in first (and
        # deletes the node of the grant it gave up), the lock becomes free.
        with fc.connect(server.url, ttl=1.5, namespace=namespace) as other:
            taken = other.acquire("orders", timeout=PROMPT)
            assert taken.token > grant.token
        assert backend.wait_connected(PROMPT)
        assert not backend.suspended


# -- (g) ----------------------------------------------------------------------------------------


def test_requests_abandoned_on_a_silent_server_leave_no_node_behind(namespace: str) -> None:
    require_zookeeper()
    with ZooKeeperServer() as server, \
            fc.connect(server.url, ttl=20, timeout=1, namespace=namespace) as connected, \
            fc.connect(server.url, ttl=20, namespace=namespace) as other:
        backend = _zk(connected)
        held = backend.acquire("payments", timeout=PROMPT)
        server.pause(server.member)
        try:
            # The create is sent but not answered within the 1 s timeout: the caller is
            # told, and the node, created once the server runs again, must not block the lock.
            with pytest.raises(fc.BackendUnavailable):
                backend.acquire("orders", timeout=PROMPT)
            # The release is not answered either: not "released" (it cannot be told
            # whether the lock was still held), but the lock is given up all the same.
            with pytest.raises(fc.BackendUnavailable):
                backend.release(held)
            assert held.released
        finally:
            server.resume(server.member)
        taken = other.acquire("orders", timeout=PROMPT)
        assert other.acquire("payments", timeout=PROMPT).token > held.token
        assert other.describe("orders").token == taken.token
        assert backend.session_id is not None, "the session should have survived the pause"
        assert backend.locks() == ["orders", "payments"]
        assert other.describe("orders").waiters == ()


# -- (h) ----------------------------------------------------------------------------------------


def test_release_cut_off_from_the_quorum_never_says_true(zk_ensemble: ZooKeeperTarget, namespace: str) -> None:
    ensemble = zk_ensemble.ensemble
    if ensemble is None:
        pytest.skip("needs the ensemble's processes (not a container)")
    leader = ensemble.leader()
    cut_off = next(m for m in ensemble.members if m is not leader)
    others = [m for m in ensemble.members if m is not cut_off]
    with fc.connect(ensemble.url_of(cut_off), ttl=2, timeout=1, namespace=namespace) as connected, \
            fc.connect(ensemble.url_of(*others), ttl=4, namespace=namespace) as successor:
        backend = _zk(connected)
        grant = backend.acquire("orders", timeout=PROMPT)
        ensemble.pause(cut_off)  # the holder's only member: the quorum goes on without it
        try:
            # Granted once the leader has expired the silent holder's session.
            taken = successor.acquire("orders", timeout=PROMPT)
            assert taken.token > grant.token
            started = time.monotonic()
            try:
                answer: bool | None = backend.release(grant)
            except fc.BackendUnavailable:
                answer = None  # "cannot tell" is honest; "released" is not
            took = time.monotonic() - started
            assert answer is not True, "release said True after a successor was granted the lock"
            assert took < 1.5, f"release took {took:.2f} s with timeout=1"
        finally:
            ensemble.resume(cut_off)
            wait_until(cut_off.serving, PROMPT, f"{cut_off.name} serving again")
