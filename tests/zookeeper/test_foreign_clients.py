"""Mixed fleets on ZooKeeper: our locks and elections against real foreign clients on
the same znodes, in both directions -- kazoo's ``Lock`` (given the pattern of our
nodes), kazoo's ``Election``, and ZooKeeper's own Java ``WriteLock`` recipe (compiled
here with ``javac`` against Debian's zookeeper recipes jar). A foreign holder's token is
its node's czxid."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.gate import FencedResource
from fencing_coord.stores.memory import MemoryStore

from ..cli.helpers import cli
from .conftest import MakeZK, ZooKeeperTarget

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0
#: What kazoo's Lock needs to see our lock nodes (``_c_<nonce>-lock-<seq>``).
KAZOO_PATTERNS = ["-lock-"]
JARS = ("zookeeper.jar", "zookeeper-jute.jar", "zookeeper-recipes-lock.jar", "slf4j-api.jar")

RECIPE_LOCK = """
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.concurrent.CountDownLatch;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.recipes.lock.LockListener;
import org.apache.zookeeper.recipes.lock.WriteLock;

/** ZooKeeper's WriteLock recipe on args[1] (which must exist): prints QUEUED <node>, then
 *  LOCKED <node> once it holds; unlocks at the first line on stdin and prints UNLOCKED. */
public class RecipeLock {
    public static void main(String[] args) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(args[0], 30000, event -> {
            if (event.getState() == Watcher.Event.KeeperState.SyncConnected) connected.countDown();
        });
        connected.await();
        CountDownLatch acquired = new CountDownLatch(1);
        WriteLock lock = new WriteLock(zk, args[1], ZooDefs.Ids.OPEN_ACL_UNSAFE, new LockListener() {
            public void lockAcquired() { acquired.countDown(); }
            public void lockReleased() { }
        });
        lock.lock();
        System.out.println("QUEUED " + lock.getId());
        System.out.flush();
        acquired.await();
        System.out.println("LOCKED " + lock.getId());
        System.out.flush();
        new BufferedReader(new InputStreamReader(System.in)).readLine();
        lock.unlock();
        System.out.println("UNLOCKED");
        System.out.flush();
        zk.close();
    }
}
"""


@pytest.fixture(scope="session")
def recipe_classpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The compiled RecipeLock program's classpath (skipped without a JDK or the jars)."""
    javac = shutil.which("javac")
    if javac is None or shutil.which("java") is None:
        pytest.skip("javac/java are not on PATH (apt-get install default-jdk-headless)")
    jars = [Path("/usr/share/java") / jar for jar in JARS]
    missing = [str(jar) for jar in jars if not jar.exists()]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (apt-get install libzookeeper-java libslf4j-java)")
    out = tmp_path_factory.mktemp("recipe")
    (out / "RecipeLock.java").write_text(RECIPE_LOCK)
    classpath = ":".join([str(out), *map(str, jars)])
    subprocess.run([javac, "-proc:none", "-cp", classpath, "-d", str(out), str(out / "RecipeLock.java")],
                   check=True, capture_output=True, timeout=300)
    return classpath


class RecipeLockProcess:
    """One running RecipeLock; its stdout lines, in order."""

    def __init__(self, classpath: str, hosts: str, parent: str) -> None:
        self.process = subprocess.Popen(["java", "-cp", classpath, "RecipeLock", hosts, parent],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)

    def line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            assert self.process.stderr is not None
            pytest.fail(f"RecipeLock ended ({self.process.wait()}): {self.process.stderr.read()[-2000:]}")
        return line.strip()

    def unlock(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(PROMPT)


@pytest.fixture
def recipe(recipe_classpath: str, zk_standalone: ZooKeeperTarget) -> Iterator[Callable[[str], RecipeLockProcess]]:
    started: list[RecipeLockProcess] = []

    def start(parent: str) -> RecipeLockProcess:
        started.append(RecipeLockProcess(recipe_classpath, zk_standalone.hosts, parent))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def until(condition: Callable[[], bool], timeout: float = PROMPT) -> None:
    """Re-check ``condition`` (a read of ZooKeeper's state) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _in_thread(fn: Callable[[], object]) -> Future[Any]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


# -- kazoo's Lock ------------------------------------------------------------------------------


def test_kazoo_lock_waits_for_ours_and_its_czxid_is_its_token(make: MakeZK, operator: Any) -> None:
    backend = make(identity="ours")
    gate = FencedResource(MemoryStore())
    grant = backend.acquire("orders", timeout=PROMPT)
    assert gate.write("orders", "row", b"ours", token=grant.token).accepted
    parent = backend.lock_path("orders")
    kazoo_lock = operator.Lock(parent, "kazoo-app", extra_lock_patterns=KAZOO_PATTERNS)
    waiting = _in_thread(lambda: kazoo_lock.acquire(timeout=PROMPT))
    until(lambda: len(backend.describe("orders").waiters) == 1)
    [waiter] = backend.describe("orders").waiters
    assert waiter.startswith("kazoo:")
    assert "__lock__" in waiter
    assert not waiting.done()
    backend.release(grant)
    assert waiting.result(PROMPT) is True
    node = waiter.split(":", 1)[1]
    czxid = operator.exists(f"{parent}/{node}").czxid
    assert backend.describe("orders") == fc.LockState("orders", waiter, czxid, ())
    assert czxid > grant.token
    assert make().try_acquire("orders") is None
    assert gate.write("orders", "row", b"kazoo", token=czxid).accepted
    assert not gate.write("orders", "row", b"stale", token=grant.token).accepted
    kazoo_lock.release()
    after = backend.acquire("orders", timeout=PROMPT)
    assert after.token > czxid
    assert gate.write("orders", "row", b"ours again", token=after.token).accepted


def test_our_lock_waits_for_kazoos(make: MakeZK, operator: Any) -> None:
    backend = make(identity="ours")
    kazoo_lock = operator.Lock(backend.lock_path("orders"), "kazoo-app", extra_lock_patterns=KAZOO_PATTERNS)
    assert kazoo_lock.acquire(timeout=PROMPT)
    queued = threading.Event()
    waiting = _in_thread(lambda: backend.acquire("orders", timeout=PROMPT, on_queued=queued.set))
    assert queued.wait(PROMPT)
    state = backend.describe("orders")
    assert state.holder is not None
    assert state.holder.startswith("kazoo:")
    assert state.waiters == ("ours",)
    assert not waiting.done()
    kazoo_lock.release()
    grant = waiting.result(PROMPT)
    assert grant.token > state.token


def test_status_json_prints_a_kazoo_holders_czxid(zk_standalone: ZooKeeperTarget, make: MakeZK,
                                                  operator: Any, namespace: str) -> None:
    parent = make().lock_path("orders")
    kazoo_lock = operator.Lock(parent, "kazoo-app", extra_lock_patterns=KAZOO_PATTERNS)
    assert kazoo_lock.acquire(timeout=PROMPT)
    [node] = operator.get_children(parent)
    status = cli("status", "--url", zk_standalone.url, "--namespace", namespace, "--json", "orders")
    assert status.returncode == 0, status.stderr
    [lock] = json.loads(status.stdout)["locks"]
    assert (lock["holder"], lock["token"]) == (f"kazoo:{node}", operator.exists(f"{parent}/{node}").czxid)
    kazoo_lock.release()


# -- ZooKeeper's Java WriteLock recipe --------------------------------------------------------------


def test_zookeeper_recipe_write_lock_waits_for_ours(
    make: MakeZK, recipe: Callable[[str], RecipeLockProcess], operator: Any
) -> None:
    backend = make(identity="ours")
    grant = backend.acquire("orders", timeout=PROMPT)
    java = recipe(backend.lock_path("orders"))
    queued = java.line()
    assert queued.startswith("QUEUED ")
    node = queued.split()[1].rsplit("/", 1)[1]
    assert backend.describe("orders") == fc.LockState("orders", "ours", grant.token, (f"zookeeper-recipe:{node}",))
    backend.release(grant)
    assert java.line() == f"LOCKED {queued.split()[1]}"
    czxid = operator.exists(queued.split()[1]).czxid
    assert backend.describe("orders") == fc.LockState("orders", f"zookeeper-recipe:{node}", czxid, ())
    assert czxid > grant.token


def test_our_lock_waits_for_zookeeper_recipe_write_lock(
    make: MakeZK, recipe: Callable[[str], RecipeLockProcess], operator: Any
) -> None:
    backend = make(identity="ours")
    parent = backend.lock_path("orders")
    operator.ensure_path(parent)  # the recipe does not create parents
    java = recipe(parent)
    java.line()
    locked = java.line()
    assert locked.startswith("LOCKED ")
    czxid = operator.exists(locked.split()[1]).czxid
    queued = threading.Event()
    waiting = _in_thread(lambda: backend.acquire("orders", timeout=PROMPT, on_queued=queued.set))
    assert queued.wait(PROMPT)
    assert backend.describe("orders").token == czxid
    assert not waiting.done()
    java.unlock()
    assert java.line() == "UNLOCKED"
    assert waiting.result(PROMPT).token > czxid


# -- kazoo's Election ---------------------------------------------------------------------------------


def test_kazoo_election_and_ours_take_turns(make: MakeZK, operator: Any) -> None:
    """kazoo's Election has no pattern option; our candidate nodes end in ``__lock__<seq>``,
    which it counts, so both directions hold."""
    backend = make(identity="ours")
    election = backend.election("scheduler")
    term = election.campaign(timeout=PROMPT, value=b"http://ours")
    parent = backend.election_path("scheduler")
    kazoo_election = operator.Election(parent, "kazoo-app")
    leading, done = threading.Event(), threading.Event()

    def lead() -> None:
        leading.set()
        done.wait(PROMPT)

    kazoo_run = _in_thread(lambda: kazoo_election.run(lead))
    until(lambda: len(operator.get_children(parent)) == 2)
    assert not leading.is_set()
    assert election.leader() == fc.Leader("ours", b"http://ours", term.token)
    term.resign()
    assert leading.wait(PROMPT)
    [node] = operator.get_children(parent)
    leader = election.leader()
    assert leader == fc.Leader(f"kazoo:{node}", b"kazoo-app", operator.exists(f"{parent}/{node}").czxid)
    queued = threading.Event()
    waiting = _in_thread(lambda: election.campaign(timeout=PROMPT, value=b"again", on_queued=queued.set))
    assert queued.wait(PROMPT)
    assert not waiting.done()
    done.set()
    kazoo_run.result(PROMPT)
    assert leader is not None
    assert waiting.result(PROMPT).token > leader.token


# -- names (pure) ----------------------------------------------------------------------------------


def test_foreign_contenders_are_counted_and_ordered_by_sequence_number() -> None:
    from fencing_coord.backends.zookeeper.names import queue_contenders, queue_order

    children = [
        "_c_0123456789abcdef-lock--2147483648",            # ours, after the counter's wrap
        "x-72057594037927937-2147483646",                   # ZooKeeper's WriteLock recipe
        "_c_9c0e2a3b-7f4d-4c59-a1de-0f1e2d3c4b5a-lock-2147483645",  # Curator
        "3f2a9b8c7d6e5f4a3b2c1d0e9f8a7b6c__lock__2147483647",  # kazoo Lock / Election
        "0a1b2c3d4e5f60718293a4b5c6d7e8f9__rlock__2147483644",  # kazoo ReadLock
        "lock-fedcba9876543210-2147483643",                  # fencing-coord before _c_
        "_c_0123456789abcdef-candidate__lock__2147483642",   # our candidate: not in a lock queue
        "readme", "x-1-", "lock-0000000001x",
    ]
    ordered = queue_order(queue_contenders(children, "lock"))
    assert [(c.flavor, c.seq) for c in ordered] == [
        ("fencing-coord-legacy", 2147483643), ("kazoo", 2147483644), ("curator", 2147483645),
        ("zookeeper-recipe", 2147483646), ("kazoo", 2147483647), ("fencing-coord", -2147483648),
    ]
    assert [c.ours for c in ordered] == [False] * 5 + [True]
