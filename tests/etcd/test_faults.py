"""Faults on real etcd processes and real client processes.

(a) a holder process is SIGSTOPped past its TTL: another client acquires and writes; the
    holder resumes, its write is refused by the gate, and it sees ``lost``;
(b) the cluster leader is SIGKILLed while the lock is held and contended: service
    resumes, tokens keep increasing, the gate's history has no write out of order;
(c) a single node is killed and restarted on its data dir: later tokens are larger;
(d) the lease is revoked out of band (etcdctl): ``lost`` fires, the next token is larger.

Nothing here sleeps to synchronise: every wait is on a process's report, a lock grant
or an ``on_lost`` event (with a generous bound only so that a broken build fails
instead of hanging).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.etcd import EtcdBackend, EtcdStore
from fencing_coord.gate import FencedResource
from fencing_coord.servers.etcd import EtcdCluster, EtcdServer
from fencing_coord.stores import SQLiteStore, Store

from .conftest import EtcdTarget, require_etcd_binary, require_etcdctl

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

HOLDER = Path(__file__).with_name("holder.py")
# Bound on any single wait, so that a broken build fails instead of hanging.
PROMPT = 60.0


class Holder:
    """A holder.py child process; its JSON reports arrive on a queue."""

    def __init__(self, url: str, store: str, *, ttl: float, namespace: str, worker: str | None = None,
                 reports: queue.Queue[dict[str, Any]] | None = None) -> None:
        argv = [sys.executable, str(HOLDER), url, "--store", store, "--ttl", str(ttl), "--namespace", namespace]
        if worker is not None:
            argv += ["--worker", worker]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.reports: queue.Queue[dict[str, Any]] = reports if reports is not None else queue.Queue()
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline() or '{"event": "exited"}')
        assert ready["event"] == "ready", ready
        self.identity = ready["identity"]
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            report = json.loads(line)
            report["pid"] = self.proc.pid
            self.reports.put(report)
        self.reports.put({"event": "exited", "pid": self.proc.pid})

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str) -> dict[str, Any]:
        report = self.reports.get(timeout=PROMPT)
        assert report["event"] == event, report
        return report

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(PROMPT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def namespace() -> str:
    return f"faults-{uuid.uuid4().hex[:10]}"


def _store(kind: str, tmp_path: Path, backend: EtcdBackend) -> tuple[str, Store]:
    """(the holder's --store spec, the same store opened in this process)."""
    if kind == "etcd":
        return "etcd", EtcdStore(backend)
    path = tmp_path / "state.db"
    return f"sqlite:{path}", SQLiteStore(path)


# -- (a) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["sqlite", "etcd"])
def test_paused_holder_is_refused_and_sees_lost(
    etcd_single: EtcdTarget, tmp_path: Path, namespace: str, store_kind: str
) -> None:
    with fc.connect(etcd_single.url, ttl=2, namespace=namespace) as successor:
        assert isinstance(successor, EtcdBackend)
        spec, store = _store(store_kind, tmp_path, successor)
        resource = FencedResource(store)
        holder = Holder(etcd_single.url, spec, ttl=2, namespace=namespace)
        try:
            holder.send("acquire orders")
            old_token = holder.expect("acquired")["token"]
            holder.send("write orders k1 from-holder")
            assert holder.expect("write")["accepted"] is True

            # The holder stops dead (no keepalives) while it holds the lock.
            holder.signal(signal.SIGSTOP)
            # Granted once etcd has expired the paused holder's lease.
            grant = successor.acquire("orders", timeout=PROMPT)
            assert grant.token > old_token
            assert resource.write("orders", "k1", b"from-successor", token=grant.token).accepted

            # The holder wakes up and writes as if nothing happened: refused.
            holder.signal(signal.SIGCONT)
            holder.send("write orders k1 late-holder")
            late = holder.expect("write")
            assert late["accepted"] is False
            assert late["reason"] == f"stale token {old_token} < {grant.token}"
            assert late["lost"] is True
            assert late["lost_reason"].startswith("lease expired")
            holder.send("wait-lost")
            lost = holder.expect("lost")
            assert lost["calls"] == 1
            assert lost["reason"].startswith("lease expired")

            assert resource.read("orders", "k1") == b"from-successor"
            assert resource.highest_token("orders") == grant.token
            successor.release(grant)
        finally:
            holder.close()
            store.close()


# -- (b) ----------------------------------------------------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[EtcdCluster]:
    """A 3-member cluster of this test's own (it kills members)."""
    require_etcd_binary()
    with EtcdCluster(size=3) as cluster:
        yield cluster


def test_leader_killed_while_lock_is_contended(own_cluster: EtcdCluster, tmp_path: Path, namespace: str) -> None:
    db = tmp_path / "state.db"
    reports: queue.Queue[dict[str, Any]] = queue.Queue()
    members = own_cluster.members
    workers = []
    try:
        for i in range(3):
            # Each worker starts on a different member, so one of them loses its member.
            rotated = members[i:] + members[:i]
            workers.append(Holder(own_cluster.url_of(*rotated), f"sqlite:{db}", ttl=5, namespace=namespace,
                                  worker="orders", reports=reports))
        for worker in workers:
            worker.send("go")
        progress: list[dict[str, Any]] = []

        def run_until(count: int) -> None:
            while len(progress) < count:
                report = reports.get(timeout=PROMPT)
                assert report["event"] in ("progress", "refused", "unavailable"), report
                if report["event"] == "progress":
                    progress.append(report)

        run_until(15)
        leader = own_cluster.leader()
        own_cluster.kill(leader)
        at_kill = len(progress)
        run_until(at_kill + 15)  # service resumes without the old leader
        for worker in workers:
            worker.send("stop")
        done = 0
        while done < len(workers):
            report = reports.get(timeout=PROMPT)
            if report["event"] == "done":
                done += 1
    finally:
        for worker in workers:
            worker.close()

    with SQLiteStore(db) as store:
        resource = FencedResource(store)
        count = int(resource.read("orders", "counter") or b"0")
        entries = []
        for n in range(1, count + 1):
            value = resource.read("orders", f"entry-{n}")
            assert value is not None, f"increment {n} has no entry: an update was lost"
            entries.append(int(value))
    # Each increment is one grant's read-modify-write, admitted only for the newest
    # holder: in the order the gate admitted them, the tokens strictly increase.
    assert entries == sorted(set(entries)), f"writes out of order: {entries}"
    assert count >= at_kill + 15
    reported = {r["n"]: r["token"] for r in progress}
    before = max(t for n, t in reported.items() if n <= at_kill)
    after = [t for n, t in reported.items() if n > at_kill]
    assert after, "no progress after the leader was killed"
    assert min(after) > before, "tokens after the failover are not larger"
    assert len({r["pid"] for r in progress}) == 3, "the lock did not move between the workers"


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
