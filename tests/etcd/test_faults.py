"""Faults on real etcd processes and real client processes.

(a) a holder process is SIGSTOPped past its TTL: another client acquires and writes; the
    holder resumes, its write is refused by the gate, and it sees ``lost``;
(b) the cluster leader is SIGKILLed while the lock is held and contended: service
    resumes, tokens keep increasing, the gate's history has no write out of order;
    (a) and (b) run with holder processes on the blocking API and on the asyncio API
    (tests/holder.py, tests/aio_holder.py);
(c) a single node is killed and restarted on its data dir: later tokens are larger;
(d) the lease is revoked out of band (etcdctl): ``lost`` fires, the next token is larger;
(e) the server stops answering: a release it cannot answer is BackendUnavailable, and
    the release of a grant known lost is False at once, without a request.

Nothing here sleeps to synchronise: every wait is on a process's report, a lock grant
or an ``on_lost`` event (with a generous bound only so that a broken build fails
instead of hanging).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import fencing_coord as fc
from fencing_coord.backends.etcd import EtcdBackend
from fencing_coord.servers.etcd import EtcdCluster, EtcdServer

from ..faults import (
    AIO_HOLDER,
    HOLDER,
    PROMPT,
    Workers,
    check_contended_history,
    each_member_first,
    pause_holder_past_its_ttl,
)
from .conftest import EtcdTarget, require_etcd_binary, require_etcdctl

pytestmark = [pytest.mark.etcd, pytest.mark.slow]


@pytest.fixture
def namespace() -> str:
    return f"faults-{uuid.uuid4().hex[:10]}"


# -- (a) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("program", [HOLDER, AIO_HOLDER], ids=["blocking", "async"])
@pytest.mark.parametrize("store_kind", ["sqlite", "etcd"])
def test_paused_holder_is_refused_and_sees_lost(
    etcd_single: EtcdTarget, tmp_path: Path, namespace: str, store_kind: str, program: Path
) -> None:
    with fc.connect(etcd_single.url, ttl=2, namespace=namespace) as successor:
        assert isinstance(successor, EtcdBackend)
        run = pause_holder_past_its_ttl(successor, etcd_single.url, store_kind, tmp_path, ttl=2, namespace=namespace,
                                        program=program)
        assert run.late["lost"] is True
        assert run.late["lost_reason"].startswith("lease expired")
        assert run.lost["reason"].startswith("lease expired")
        successor.release(run.grant)


# -- (b) ----------------------------------------------------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[EtcdCluster]:
    """A 3-member cluster of this test's own (it kills members)."""
    require_etcd_binary()
    with EtcdCluster(size=3) as cluster:
        yield cluster


@pytest.mark.parametrize("program", [HOLDER, AIO_HOLDER], ids=["blocking", "async"])
def test_leader_killed_while_lock_is_contended(own_cluster: EtcdCluster, tmp_path: Path, namespace: str,
                                               program: Path) -> None:
    db = tmp_path / "state.db"
    urls = [own_cluster.url_of(*members) for members in each_member_first(own_cluster.members)]
    with Workers(urls, db, ttl=5, namespace=namespace, program=program) as workers:
        workers.go()
        workers.run_until(15)
        leader = own_cluster.leader()
        own_cluster.kill(leader)
        at_kill = len(workers.progress)
        workers.run_until(at_kill + 15)  # service resumes without the old leader
        workers.stop()
    check_contended_history(db, workers.progress, at_kill, after=15, workers=3)


# -- (c) ----------------------------------------------------------------------------------------


def test_tokens_after_a_restart_exceed_those_before(namespace: str) -> None:
    require_etcd_binary()
    with EtcdServer() as server:
        # A long TTL: the session outlives the restart (etcd persists leases).
        with fc.connect(server.url, ttl=10, namespace=namespace) as backend:
            before = []
            for _ in range(3):
                grant = backend.acquire("orders", timeout=PROMPT)
                before.append(grant.token)
                backend.release(grant)
            held = backend.acquire("payments", timeout=PROMPT)

            server.kill(server.member)  # a crash, not a shutdown
            server.restart(server.member)

            grant = backend.acquire("orders", timeout=PROMPT)
            assert grant.token > max(before)
            assert backend.release(grant)
            assert not held.lost
            assert backend.describe("payments").token == held.token
            assert backend.release(held) is True
        with fc.connect(server.url, ttl=10, namespace=namespace) as fresh:
            assert fresh.acquire("orders", timeout=PROMPT).token > grant.token


# -- (d) ----------------------------------------------------------------------------------------


def test_lease_revoked_out_of_band(etcd_single: EtcdTarget, namespace: str) -> None:
    with fc.connect(etcd_single.url, ttl=3, namespace=namespace) as backend, \
            fc.connect(etcd_single.url, ttl=3, namespace=namespace) as other:
        assert isinstance(backend, EtcdBackend)
        grant = backend.acquire("orders", timeout=PROMPT)
        lost = threading.Event()
        reasons: list[str | None] = []

        def on_lost(g: fc.Grant) -> None:
            reasons.append(g.lost_reason)
            lost.set()

        grant.on_lost(on_lost)
        lease_id = backend.lease_id
        assert lease_id is not None
        endpoint = backend.endpoints[0]
        subprocess.run([require_etcdctl(), f"--endpoints={endpoint}", "lease", "revoke", f"{lease_id:x}"],
                       check=True, capture_output=True, timeout=PROMPT)

        # etcd deleted the key at once: another client gets the lock right away ...
        taken = other.try_acquire("orders")
        assert taken is not None
        assert taken.token > grant.token
        other.release(taken)
        # ... and the holder learns at its next keepalive.
        assert lost.wait(PROMPT)
        assert grant.wait_lost(PROMPT)
        assert reasons == ["lease revoked"]
        assert grant.lost
        with pytest.raises(fc.LockLost):
            backend.renew(grant)
        assert backend.release(grant) is False

        again = backend.acquire("orders", timeout=PROMPT)
        assert again.token > taken.token
        assert backend.lease_id not in (None, lease_id)
        assert not again.lost


# -- (e) ----------------------------------------------------------------------------------------


def test_release_on_a_silent_server_is_unknown_or_false_once_lost(namespace: str) -> None:
    require_etcd_binary()
    # ``unanswered`` is held on a 30 s lease: with the 2 s one, a loaded machine (load 9)
    # starved the keepalive for a whole TTL before the pause, the grant was known lost,
    # and its release rightly said False at once.
    with EtcdServer() as server, fc.connect(server.url, ttl=30, timeout=1, namespace=namespace) as steady, \
            fc.connect(server.url, ttl=2, timeout=1, namespace=namespace) as backend:
        unanswered = steady.acquire("orders", timeout=PROMPT)
        doomed = backend.acquire("payments", timeout=PROMPT)
        server.pause(server.member)
        try:
            started = time.monotonic()
            with pytest.raises(fc.BackendUnavailable):
                steady.release(unanswered)  # etcd cannot say whether it was still held
            assert time.monotonic() - started < 1.5
            assert unanswered.released
            # No keepalive confirmed for a whole TTL: the grant is known lost, and its
            # release says so at once instead of waiting for etcd.
            assert doomed.wait_lost(PROMPT)
            started = time.monotonic()
            assert backend.release(doomed) is False
            took = time.monotonic() - started
            assert took < 0.5, f"the release of a grant known lost took {took:.2f} s"
        finally:
            server.resume(server.member)
