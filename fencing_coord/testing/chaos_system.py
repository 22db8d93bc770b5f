"""The system the fault campaign runs against: a 3-member etcd cluster or ZooKeeper
ensemble, a PostgreSQL server, a SQLite file, and the worker processes.

As root (with ``ip`` and ``iptables``), every member and every worker runs in a network
namespace of its own, on one :class:`~fencing_coord.testing.netlab.NetLab` bridge, so
that the nemesis can partition them; ``ctl`` is the namespace for the campaign's own
clients (lease revocation, session expiry, the final read). Otherwise everything runs
on loopback and the network faults are left out. PostgreSQL stays in this process's
network: workers reach it through its Unix socket, which no network fault touches (the
stores are the protected resource, not the system under test).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..servers.etcd import EtcdCluster, EtcdMember
from ..servers.postgres import FAST_SETTINGS, PostgresServer
from ..servers.zookeeper import ZooKeeperEnsemble, ZooKeeperMember
from .netlab import NetLab, Node, unavailable_reason

__all__ = ["System", "WorkerPool", "WorkerSlot"]

_log = logging.getLogger(__name__)

Member = EtcdMember | ZooKeeperMember


class System:
    """The servers, and the lab when there is one. A context manager: everything it
    started is stopped on exit, the lab's namespaces deleted."""

    def __init__(self, backend: str, run_dir: Path, *, workers: int, use_lab: bool) -> None:
        self.backend = backend
        self.run_dir = run_dir
        self.lab: NetLab | None = None
        self.member_nodes: list[Node] = []
        self.worker_nodes: list[Node | None] = [None] * workers
        self.ctl: Node | None = None
        self.group: EtcdCluster | ZooKeeperEnsemble
        self.postgres = PostgresServer(settings=FAST_SETTINGS)
        self._stack = ExitStack()
        self.lab_skipped = None if use_lab else "--no-lab"
        if use_lab:
            self.lab_skipped = unavailable_reason()

    def __enter__(self) -> System:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        if self.lab_skipped is None:
            self.lab = self._stack.enter_context(NetLab())
            self.member_nodes = [self.lab.add_node(f"m{i}") for i in (1, 2, 3)]
            self.worker_nodes = [self.lab.add_node(f"w{i}") for i in range(1, len(self.worker_nodes) + 1)]
            self.ctl = self.lab.add_node("ctl")
        placements = [n.placement for n in self.member_nodes] or None
        base = self.run_dir / "servers"
        if self.backend == "etcd":
            self.group = EtcdCluster(3, base_dir=base, placements=placements)
        else:
            self.group = ZooKeeperEnsemble(3, base_dir=base, placements=placements)
        self._stack.enter_context(self.group)
        self._stack.enter_context(self.postgres)

    # -- what clients need -------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.group.url

    @property
    def members(self) -> list[Member]:
        return list(self.group.members)

    def node_of(self, member: Member) -> Node | None:
        return next((n for n in self.member_nodes if n.address == member.host), None)

    def postgres_dsn(self) -> str:
        """The DSN workers use: the Unix socket (reachable from any namespace)."""
        assert self.postgres.base_dir is not None
        return f"postgresql://postgres@/postgres?host={self.postgres.base_dir / 'sockets'}&port={self.postgres.port}"

    def ctl_command(self, argv: list[str]) -> list[str]:
        return self.ctl.command(argv) if self.ctl is not None else argv

    def leader(self) -> Member:
        return self.group.leader(timeout=30)

    def wait_serving(self, timeout: float = 60.0) -> None:
        if isinstance(self.group, EtcdCluster):
            self.group.wait_healthy(timeout)
        else:
            self.group.wait_ready(timeout)

    def restart(self, member: Member) -> None:
        """Start a killed member again on its data directory (returns at once)."""
        member.process.start()


@dataclass
class WorkerSlot:
    """One worker position: its current process (a new one after each kill)."""

    index: int
    node: Node | None
    generation: int = 0
    proc: subprocess.Popen[bytes] | None = None
    crashes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"w{self.index}g{self.generation}"


class WorkerPool:
    """The worker processes of one phase (fenced, or the unfenced control)."""

    def __init__(self, system: System, phase_dir: Path, *, stores: list[str], counters: int, prefix: str,
                 unfenced: bool, seed: int, ttl: float, think: float) -> None:
        self.system = system
        self.dir = phase_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stores, self.counters, self.prefix = stores, counters, prefix
        self.unfenced, self.seed, self.ttl, self.think = unfenced, seed, ttl, think
        self.slots = [WorkerSlot(i, node) for i, node in enumerate(system.worker_nodes, start=1)]
        # The nemesis replaces killed workers while the driver restarts crashed ones.
        self._lock = threading.Lock()

    def start_all(self) -> None:
        for slot in self.slots:
            self.start(slot)

    def start(self, slot: WorkerSlot) -> None:
        slot.generation += 1
        argv = [sys.executable, "-m", "fencing_coord.testing.chaos_worker", "run", self.system.url,
                "--worker", slot.name, "--history", str(self.dir / f"{slot.name}.jsonl"),
                "--status", str(self.status_path(slot)), "--counters", str(self.counters),
                "--prefix", self.prefix, "--ttl", str(self.ttl), "--think", str(self.think),
                "--seed", str(self.seed * 1000 + slot.index * 100 + slot.generation)]
        for spec in self.stores:
            argv += ["--store", spec]
        if self.unfenced:
            argv.append("--unfenced")
        command = slot.node.command(argv) if slot.node is not None else argv
        log = open(self.dir / f"{slot.name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            slot.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def status_path(self, slot: WorkerSlot) -> Path:
        return self.dir / f"w{slot.index}.status.json"

    def status(self, slot: WorkerSlot) -> dict[str, Any]:
        try:
            value: dict[str, Any] = json.loads(self.status_path(slot).read_text())
            return value
        except (OSError, ValueError):
            return {}

    def signal(self, slot: WorkerSlot, sig: signal.Signals) -> None:
        if slot.proc is not None and slot.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                slot.proc.send_signal(sig)

    def replace(self, slot: WorkerSlot) -> None:
        """SIGKILL the slot's worker and start a new one in its place."""
        with self._lock:
            self.signal(slot, signal.SIGKILL)
            if slot.proc is not None:
                slot.proc.wait()
            self.start(slot)

    def check_crashes(self) -> None:
        """Restart any worker that exited on its own (and remember why)."""
        with self._lock:
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is not None:
                    log = self.dir / f"{slot.name}.log"
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    slot.crashes.append(f"{slot.name} exited {slot.proc.returncode}: {tail}")
                    self.start(slot)

    def stop_all(self, grace: float = 20.0) -> None:
        """SIGCONT and SIGTERM every worker; SIGKILL those still running after ``grace``."""
        for slot in self.slots:
            self.signal(slot, signal.SIGCONT)
            self.signal(slot, signal.SIGTERM)
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(grace)
            except subprocess.TimeoutExpired:
                _log.warning("worker %s did not stop in %s s; killing it", slot.name, grace)
                slot.proc.kill()
                slot.proc.wait()

    def histories(self) -> list[Path]:
        return sorted(self.dir.glob("w*g*.jsonl"))

    @property
    def crashes(self) -> list[str]:
        return [c for slot in self.slots for c in slot.crashes]
