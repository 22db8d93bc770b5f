"""The nemesis of the fault campaign: it draws faults at random and injects them, one
round at a time on each of three threads, so that faults of different families overlap.

Worker process faults (one thread): ``pause-holder`` (SIGSTOP a worker that holds a
lock, for up to twice the TTL, then SIGCONT), ``kill-worker`` (SIGKILL, then a new
process), ``revoke-lease`` (etcd: ``etcdctl lease revoke``) or ``expire-session``
(ZooKeeper: a twin connection closes the worker's session).

Worker network faults (one thread, with the lab): ``partition-worker`` (cut one worker
off) and ``one-way`` (drop what a worker sends to the members, or what they send to it).

Cluster faults (one thread): ``kill-member`` (SIGKILL, restart on its data),
``pause-member`` (SIGSTOP, SIGCONT), and with the lab ``partition-leader`` (the leader
cut off, alone in a minority) and ``slow-network`` (every node's packets delayed
30 ± 20 ms and 5 % of them lost). After each cluster round the nemesis waits until the
cluster serves again, so faults never pile up into a lost quorum.

Every round is appended to ``nemesis.jsonl`` (its kind, target, start and end), and a
round that could not be run (no lease to revoke, the service refused) is counted as
skipped with the reason, never as run.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import FencingCoordError
from ..servers.etcd import EtcdMember
from .chaos_system import System, WorkerPool, WorkerSlot

__all__ = ["CLUSTER_FAULTS", "LAB_FAULTS", "NETWORK_FAULTS", "PROCESS_FAULTS", "Nemesis", "Round"]

_log = logging.getLogger(__name__)

PROCESS_FAULTS = ("pause-holder", "kill-worker", "revoke-lease", "expire-session")
NETWORK_FAULTS = ("partition-worker", "one-way")
CLUSTER_FAULTS = ("kill-member", "pause-member", "partition-leader", "slow-network")
#: Faults that need the network lab.
LAB_FAULTS = ("partition-worker", "one-way", "partition-leader", "slow-network")


@dataclass(frozen=True)
class Round:
    kind: str
    target: str
    started: float
    ended: float
    skipped: str | None = None


class Skip(Exception):
    """This round cannot be run now (the reason is its message)."""


class Nemesis:
    """Injects faults into ``system`` and ``pool`` until :meth:`stop`."""

    def __init__(self, system: System, pool: WorkerPool, *, seed: int, ttl: float, log_path: Path,
                 kinds: tuple[str, ...] | None = None, pause: tuple[float, float] | None = None) -> None:
        """``kinds`` limits the faults drawn; ``pause`` is the range of a holder pause
        in seconds (default 0.2 s to twice the TTL)."""
        self.system, self.pool, self.ttl = system, pool, ttl
        self.pause = pause or (0.2, 2 * ttl + 0.5)
        self.random = random.Random(seed)
        allowed = kinds or (*PROCESS_FAULTS, *NETWORK_FAULTS, *CLUSTER_FAULTS)
        service_fault = "revoke-lease" if system.backend == "etcd" else "expire-session"

        def usable(kind: str) -> bool:
            if kind in LAB_FAULTS and system.lab is None:
                return False
            return kind not in ("revoke-lease", "expire-session") or kind == service_fault

        usable_kinds = [k for k in allowed if usable(k)]
        self.families = {
            "process": [k for k in PROCESS_FAULTS if k in usable_kinds],
            "network": [k for k in NETWORK_FAULTS if k in usable_kinds],
            "cluster": [k for k in CLUSTER_FAULTS if k in usable_kinds],
        }
        self.rounds: list[Round] = []
        self.errors: list[str] = []
        self._stopping = threading.Event()
        self._log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, kinds in self.families.items():
            if kinds:
                rng = random.Random(self.random.random())
                thread = threading.Thread(target=self._loop, args=(kinds, rng), name=f"nemesis-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        """Finish the rounds in progress (each lifts its own fault) and return."""
        self._stopping.set()
        for thread in self._threads:
            thread.join()
        os.close(self._log_fd)

    def counts(self) -> tuple[Counter[str], Counter[str]]:
        """(rounds run, rounds skipped), by kind."""
        run = Counter(r.kind for r in self.rounds if r.skipped is None)
        skipped = Counter(r.kind for r in self.rounds if r.skipped is not None)
        return run, skipped

    # -- the loop ----------------------------------------------------------------------

    def _loop(self, kinds: list[str], rng: random.Random) -> None:
        while not self._stopping.is_set():
            kind = rng.choice(kinds)
            started = time.monotonic()
            target, skipped = "", None
            try:
                target = self._run(kind, rng)
            except Skip as exc:
                skipped = str(exc)
            except (FencingCoordError, OSError, subprocess.SubprocessError) as exc:
                skipped = f"{type(exc).__name__}: {exc}"
                self.errors.append(f"{kind}: {skipped}")
            self._record(Round(kind, target, started, time.monotonic(), skipped))
            if kind in CLUSTER_FAULTS:
                try:
                    self.system.wait_serving(timeout=90)
                except FencingCoordError as exc:
                    self.errors.append(f"cluster did not serve again after {kind}: {exc}")
            self._stopping.wait(rng.uniform(0.1, 0.6))

    def _record(self, done: Round) -> None:
        with self._lock:
            self.rounds.append(done)
            os.write(self._log_fd, (json.dumps(done.__dict__) + "\n").encode())

    def _hold(self, rng: random.Random, low: float, high: float) -> None:
        """Keep a fault in place for a random while (cut short by :meth:`stop`)."""
        self._stopping.wait(rng.uniform(low, high))

    def _run(self, kind: str, rng: random.Random) -> str:
        action: Callable[[random.Random], str] = getattr(self, "_" + kind.replace("-", "_"))
        return action(rng)

    # -- client faults -----------------------------------------------------------------

    def _pick_worker(self, rng: random.Random, holding: bool = False) -> WorkerSlot:
        """A worker whose current process is working (else any), preferring one that
        holds a lock now when ``holding`` (one between its read and its writes first)."""
        statuses = {s.index: self.pool.status(s) for s in self.pool.slots}
        working = [s for s in self.pool.slots if s.proc is not None and statuses[s.index].get("pid") == s.proc.pid]
        slots = working or self.pool.slots
        if holding:  # best caught between its read and its writes, as a GC pause would
            computing = [s for s in slots if statuses[s.index].get("stage") == "computing"]
            slots = computing or [s for s in slots if statuses[s.index].get("holding")] or slots
        return rng.choice(slots)

    def _pause_holder(self, rng: random.Random) -> str:
        slot = self._pick_worker(rng, holding=True)
        self.pool.signal(slot, signal.SIGSTOP)
        try:
            self._hold(rng, *self.pause)
        finally:
            self.pool.signal(slot, signal.SIGCONT)
        return slot.name

    def _kill_worker(self, rng: random.Random) -> str:
        slot = self._pick_worker(rng, holding=rng.random() < 0.5)
        name = slot.name
        self.pool.replace(slot)
        return name

    def _revoke_lease(self, rng: random.Random) -> str:
        slot = self._pick_worker(rng, holding=True)
        lease = self.pool.status(slot).get("lease")
        if lease is None:
            raise Skip("no lease known")
        endpoints = ",".join(m.client_url for m in self.system.members if isinstance(m, EtcdMember))
        argv = ["etcdctl", f"--endpoints={endpoints}", "--command-timeout=3s", "lease", "revoke", format(lease, "x")]
        self._command(argv)
        return f"{slot.name} lease {lease:x}"

    def _expire_session(self, rng: random.Random) -> str:
        slot = self._pick_worker(rng, holding=True)
        session = self.pool.status(slot).get("session")
        if session is None:
            raise Skip("no session known")
        argv = [sys.executable, "-m", "fencing_coord.testing.chaos_worker", "expire-session",
                self.system.url.removeprefix("zookeeper://"), str(session[0]), session[1]]
        self._command(argv)
        return f"{slot.name} session {session[0]:x}"

    def _command(self, argv: list[str]) -> None:
        done = subprocess.run(self.system.ctl_command(argv), capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise Skip(f"{Path(argv[0]).name} failed: {lines[-1][:200]}")  # e.g. the lease had expired already

    def _partition_worker(self, rng: random.Random) -> str:
        assert self.system.lab is not None
        slot = self._pick_worker(rng, holding=True)
        assert slot.node is not None
        self.system.lab.isolate(slot.node)
        try:
            self._hold(rng, 0.5, 2 * self.ttl + 1)
        finally:
            self.system.lab.rejoin(slot.node)
        return slot.name

    def _one_way(self, rng: random.Random) -> str:
        lab = self.system.lab
        assert lab is not None
        slot = self._pick_worker(rng, holding=True)
        worker = slot.node
        assert worker is not None
        members = self.system.member_nodes
        outgoing = rng.random() < 0.5
        if outgoing:
            lab.drop(worker, members)
        else:
            for member in members:
                lab.drop(member, [worker])
        try:
            self._hold(rng, 0.5, 2 * self.ttl + 1)
        finally:
            if outgoing:
                lab.undrop(worker, members)
            else:
                for member in members:
                    lab.undrop(member, [worker])
        return f"{slot.name} {'to' if outgoing else 'from'} members"

    # -- cluster faults ----------------------------------------------------------------

    def _kill_member(self, rng: random.Random) -> str:
        member = rng.choice(self.system.members)
        member.process.kill()
        self._hold(rng, 0.2, 2.0)
        self.system.restart(member)
        return member.name

    def _pause_member(self, rng: random.Random) -> str:
        member = rng.choice(self.system.members)
        member.process.pause()
        try:
            self._hold(rng, 0.3, 3.0)
        finally:
            member.process.resume()
        return member.name

    def _partition_leader(self, rng: random.Random) -> str:
        lab = self.system.lab
        assert lab is not None
        leader = self.system.leader()
        node = self.system.node_of(leader)
        assert node is not None
        lab.isolate(node)
        try:
            self._hold(rng, 1.0, 4.0)
        finally:
            lab.rejoin(node)
        return leader.name

    def _slow_network(self, rng: random.Random) -> str:
        lab = self.system.lab
        assert lab is not None
        nodes = [*self.system.member_nodes, *(n for n in self.system.worker_nodes if n is not None)]
        try:
            lab.delay_all(nodes, 30, 20)
            for node in nodes:
                lab.lose(node, 0.05, incoming=False)
            self._hold(rng, 1.5, 4.0)
        finally:
            for node in nodes:
                lab.lose(node, 0.0, incoming=False)
                lab.undelay(node)
        return f"{len(nodes)} nodes"
