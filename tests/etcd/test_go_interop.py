"""Mixed fleets on etcd: our locks and elections against etcd's Go ``concurrency``
package, driven through the real ``etcdctl lock`` / ``etcdctl elect`` (Debian's
etcd-client), in both directions, on the same names."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

import fencing_coord as fc
from fencing_coord.gate import FencedResource
from fencing_coord.stores.memory import MemoryStore

from ..cli.helpers import cli
from .conftest import Connect, EtcdTarget, require_etcdctl

pytestmark = pytest.mark.etcd

PROMPT = 30.0



class Etcdctl:
    """One running ``etcdctl`` command; its stdout lines arrive on a queue."""

    def __init__(self, url: str, *args: str) -> None:
        endpoints = url.split("://", 1)[1].split("?", 1)[0]
        self.process = subprocess.Popen(
            [require_etcdctl(), f"--endpoints={endpoints}", *args],
            env={**os.environ, "ETCDCTL_API": "3"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout: float = PROMPT) -> str:
        """The next line etcdctl prints (fails the test after ``timeout`` or at its exit)."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"etcdctl printed nothing within {timeout} s")
        if line is None:
            assert self.process.stderr is not None
            pytest.fail(f"etcdctl ended ({self.process.wait()}): {self.process.stderr.read()}")
        return line

    def quiet(self) -> bool:
        return self.lines.empty() and self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM: etcdctl unlocks or resigns, then exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(PROMPT)


@pytest.fixture
def etcdctl(etcd_single: EtcdTarget) -> Iterator[Callable[..., Etcdctl]]:
    started: list[Etcdctl] = []

    def start(*args: str) -> Etcdctl:
        started.append(Etcdctl(etcd_single.url, *args))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def until(condition: Callable[[], bool], timeout: float = PROMPT) -> None:
    """Re-check ``condition`` (a read of etcd's state) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def create_revision(target: EtcdTarget, key: str) -> int:
    client = target.client()
    try:
        _, meta = client.get(key)
        assert meta is not None, f"{key} does not exist"
        return int(meta.create_revision)
    finally:
        client.close()


def _in_thread(fn: Callable[[], object]) -> Future[object]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


def _lease_name(key: str) -> str:
    return "etcd-lease:" + key.rsplit("/", 1)[1]


# -- locks ------------------------------------------------------------------------------------


def test_lock_prefix_is_the_prefix_go_expects(connect: Connect, namespace: str) -> None:
    backend = connect()
    assert backend.lock_prefix("orders") == f"/fencing-coord/{namespace}/locks/orders"
    assert backend.election_prefix("leader") == f"/fencing-coord/{namespace}/elections/leader"


def test_etcdctl_lock_waits_for_our_lock_and_gets_it_after_release(
    etcd_single: EtcdTarget, connect: Connect, etcdctl: Callable[..., Etcdctl]
) -> None:
    backend = connect(identity="ours")
    grant = backend.acquire("orders", timeout=PROMPT)
    go = etcdctl("lock", backend.lock_prefix("orders"))
    until(lambda: len(backend.describe("orders").waiters) == 1)
    state = backend.describe("orders")
    assert (state.holder, state.token) == ("ours", grant.token)
    [waiter] = state.waiters
    assert waiter.startswith("etcd-lease:")
    assert go.quiet(), "etcdctl got the lock we hold"
    backend.release(grant)
    key = go.line()
    assert key.startswith(backend.lock_prefix("orders") + "/")
    token = create_revision(etcd_single, key)
    assert token > grant.token
    assert backend.describe("orders") == fc.LockState("orders", _lease_name(key), token, ())
    assert connect().try_acquire("orders") is None


def test_our_lock_waits_for_etcdctl_lock(etcd_single: EtcdTarget, connect: Connect,
                                         etcdctl: Callable[..., Etcdctl]) -> None:
    backend = connect(identity="ours")
    go = etcdctl("lock", backend.lock_prefix("orders"))
    key = go.line()
    go_token = create_revision(etcd_single, key)
    assert backend.try_acquire("orders") is None
    queued = threading.Event()
    waiting = _in_thread(lambda: backend.acquire("orders", timeout=PROMPT, on_queued=queued.set))
    assert queued.wait(PROMPT)
    state = backend.describe("orders")
    assert (state.holder, state.token, state.waiters) == (_lease_name(key), go_token, ("ours",))
    assert not waiting.done()
    assert go.stop() == 0
    grant = waiting.result(PROMPT)
    assert isinstance(grant, fc.Grant)
    assert grant.token > go_token


def test_gate_takes_a_go_holders_create_revision_not_etcd_lock_rev(
    etcd_single: EtcdTarget, connect: Connect, etcdctl: Callable[..., Etcdctl], tmp_path: Path
) -> None:
    """An etcdctl holder's token is its key's CreateRevision (what ``describe`` and
    ``status --json`` show); ETCD_LOCK_REV is the revision at which Lock returned, later
    than that when it waited, so it is not the token."""
    backend = connect(identity="ours")
    gate = FencedResource(MemoryStore())
    first = backend.acquire("orders", timeout=PROMPT)
    assert gate.write("orders", "row", b"ours", token=first.token).accepted
    fifo = tmp_path / "go-holds"
    os.mkfifo(fifo)
    go = etcdctl("lock", backend.lock_prefix("orders"), "--", "sh", "-c",
                 f'echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV"; read done < "{fifo}"')
    until(lambda: len(backend.describe("orders").waiters) == 1)
    backend.release(first)
    key, lock_rev = go.line().split()
    token = create_revision(etcd_single, key)
    assert int(lock_rev) > token  # it waited behind us: a different revision
    status = cli("status", "--url", etcd_single.url, "--namespace", backend.namespace, "--json", "orders")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["locks"][0]["token"] == token
    assert gate.write("orders", "row", b"go", token=token).accepted
    assert not gate.write("orders", "row", b"stale", token=first.token).accepted
    with fifo.open("w") as release:
        release.write("done\n")
    assert go.stop() == 0
    second = backend.acquire("orders", timeout=PROMPT)
    assert second.token > token
    assert gate.write("orders", "row", b"ours again", token=second.token).accepted


# -- elections ---------------------------------------------------------------------------------


def test_etcdctl_elect_waits_for_our_leader(etcd_single: EtcdTarget, connect: Connect,
                                            etcdctl: Callable[..., Etcdctl]) -> None:
    backend = connect(identity="ours")
    election = backend.election("scheduler")
    term = election.campaign(timeout=PROMPT, value=b"http://ours")
    go = etcdctl("elect", backend.election_prefix("scheduler"), "go-proposal")
    prefix = backend.election_prefix("scheduler") + "/"
    client = etcd_single.client()
    try:
        until(lambda: len(list(client.get_prefix(prefix))) == 2)
    finally:
        client.close()
    assert go.quiet(), "etcdctl was elected while we lead"
    assert election.leader() == fc.Leader("ours", b"http://ours", term.token)
    term.resign()
    key = go.line()
    assert go.line() == "go-proposal"
    token = create_revision(etcd_single, key)
    assert token > term.token
    assert election.leader() == fc.Leader(_lease_name(key), b"go-proposal", token)


def test_our_candidate_waits_for_etcdctl_leader(etcd_single: EtcdTarget, connect: Connect,
                                                etcdctl: Callable[..., Etcdctl]) -> None:
    backend = connect(identity="ours")
    go = etcdctl("elect", backend.election_prefix("scheduler"), "go-proposal")
    key = go.line()
    go_token = create_revision(etcd_single, key)
    queued = threading.Event()
    election = backend.election("scheduler")
    waiting = _in_thread(lambda: election.campaign(timeout=PROMPT, value=b"v", on_queued=queued.set))
    assert queued.wait(PROMPT)
    assert not waiting.done()
    assert election.leader() == fc.Leader(_lease_name(key), b"go-proposal", go_token)
    assert go.stop() == 0
    term = waiting.result(PROMPT)
    assert isinstance(term, fc.Term)
    assert term.token > go_token


def test_raw_election_values_are_what_go_observers_see(connect: Connect, etcdctl: Callable[..., Etcdctl]) -> None:
    backend = connect(identity="ours", election_values="raw")
    election = backend.election("scheduler")
    term = election.campaign(timeout=PROMPT, value=b"http://a:8080")
    observer = etcdctl("elect", "-l", backend.election_prefix("scheduler"))
    key = observer.line()
    assert observer.line() == "http://a:8080"
    term.proclaim(b"http://b:9090")
    assert observer.line() == key
    assert observer.line() == "http://b:9090"
    assert election.leader() == fc.Leader(f"etcd-lease:{backend.lease_id:x}", b"http://b:9090", term.token)


def test_record_election_values_carry_the_identity(connect: Connect, etcdctl: Callable[..., Etcdctl]) -> None:
    backend = connect(identity="ours")
    backend.election("scheduler").campaign(timeout=PROMPT, value=b"v")
    observer = etcdctl("elect", "-l", backend.election_prefix("scheduler"))
    observer.line()
    assert observer.line() == "4:oursv"


def test_election_values_option_is_checked(etcd_single: EtcdTarget) -> None:
    with pytest.raises(fc.ConfigurationError, match="election_values"):
        fc.connect(etcd_single.url, election_values="json")
