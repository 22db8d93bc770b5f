"""What the etcd and ZooKeeper fault tests share: the driver of ``tests/holder.py`` child
processes, and the parts of their scenarios that do not depend on the backend.

- :class:`Holder`: one holder.py process; its JSON reports arrive on a queue.
- :func:`pause_holder_past_its_ttl`: scenario (a) of both suites, a holder process
  SIGSTOPped while it holds a lock; the caller checks how its backend words the loss.
- :class:`Workers` and :func:`check_contended_history`: scenario (b), worker processes
  contending for one lock while the cluster's leader is killed, and the check that the
  gate's history has no write lost or out of order.

Nothing here sleeps to synchronise: every wait is on a process's report or a lock grant,
bounded by :data:`PROMPT` only so that a broken build fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import fencing_coord as fc
from fencing_coord.gate import FencedResource
from fencing_coord.stores import SQLiteStore, Store

from . import holder as holder_program

HOLDER = Path(holder_program.__file__)
#: The same holder on the asyncio API.
AIO_HOLDER = HOLDER.with_name("aio_holder.py")
# Bound on any single wait, so that a broken build fails instead of hanging.
PROMPT = 60.0

Report = dict[str, Any]
M = TypeVar("M")


class Holder:
    """A holder.py child process; its JSON reports arrive on a queue."""

    def __init__(self, url: str, store: str, *, ttl: float, namespace: str, worker: str | None = None,
                 reports: queue.Queue[Report] | None = None, program: Path = HOLDER,
                 prefix: Sequence[str] = ()) -> None:
        """``prefix`` runs the process under a command (``ip netns exec NS`` puts it in a
        network namespace; that execs the program, so the pid stays the holder's).
        ``program``: the holder script (``aio_holder.py`` for the asyncio API)."""
        # -P: the script's directory (tests/) stays off sys.path, where tests/redis would
        # hide the redis client library.
        argv = [*prefix, sys.executable, "-P", str(program), url, "--store", store, "--ttl", str(ttl),
                "--namespace", namespace]
        if worker is not None:
            argv += ["--worker", worker]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.reports: queue.Queue[Report] = reports if reports is not None else queue.Queue()
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

    def expect(self, event: str) -> Report:
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


def open_store(kind: str, tmp_path: Path, backend: fc.LockBackend) -> tuple[str, Store]:
    """(the holder's --store spec, the same store opened in this process): ``sqlite`` is a
    file in ``tmp_path``; any other kind (``etcd``, ``zookeeper``) is the service's own
    store, reached through ``backend``."""
    spec = f"sqlite:{tmp_path / 'state.db'}" if kind == "sqlite" else kind
    return spec, holder_program.open_store(spec, backend)


# -- (a) a paused holder ------------------------------------------------------------------------


@dataclass
class PausedRun:
    """What :func:`pause_holder_past_its_ttl` saw: the successor's grant, and the paused
    holder's reports of its late write and of its ``on_lost`` calls."""

    grant: fc.Grant
    late: Report
    lost: Report


def pause_holder_past_its_ttl(successor: fc.LockBackend, url: str, store_kind: str, tmp_path: Path, *,
                              ttl: float, namespace: str, program: Path = HOLDER) -> PausedRun:
    """A holder process (``ttl``, on ``url``) acquires ``orders`` and writes ``k1``
    through a FencedResource on the store ``store_kind`` (see :func:`open_store`); it is
    SIGSTOPped while it holds the lock; ``successor`` is granted the lock (once the
    service has expired the paused holder's lease or session) with a larger token and
    writes; the holder is resumed and writes as if nothing happened.

    Checks that the late write is refused as stale, that ``on_lost`` ran once in the
    holder, and that the successor's value and token stand. Returns what the holder
    reported, for the backend's own checks (how it words the loss); the caller releases
    the successor's grant.
    """
    spec, store = open_store(store_kind, tmp_path, successor)
    holder = Holder(url, spec, ttl=ttl, namespace=namespace, program=program)
    try:
        return _pause_holder(holder, successor, FencedResource(store))
    finally:
        holder.close()
        store.close()


def _pause_holder(holder: Holder, successor: fc.LockBackend, resource: FencedResource) -> PausedRun:
    holder.send("acquire orders")
    old_token = holder.expect("acquired")["token"]
    holder.send("write orders k1 from-holder")
    assert holder.expect("write")["accepted"] is True

    # The holder stops dead (no keepalives, no heartbeats) while it holds the lock.
    holder.signal(signal.SIGSTOP)
    # Granted once the service has expired the paused holder's lease or session.
    grant = successor.acquire("orders", timeout=PROMPT)
    assert grant.token > old_token
    assert resource.write("orders", "k1", b"from-successor", token=grant.token).accepted

    # The holder wakes up and writes as if nothing happened: refused.
    holder.signal(signal.SIGCONT)
    holder.send("write orders k1 late-holder")
    late = holder.expect("write")
    assert late["accepted"] is False
    assert late["lost"] is True, f"the resumed holder wrote without seeing its grant lost: {late}"
    assert late["reason"] == f"stale token {old_token} < {grant.token}"
    holder.send("wait-lost")
    lost = holder.expect("lost")
    assert lost["calls"] == 1

    assert resource.read("orders", "k1") == b"from-successor"
    assert resource.highest_token("orders") == grant.token
    return PausedRun(grant, late, lost)


# -- (b) contended workers across a failover ----------------------------------------------------


def each_member_first(members: Sequence[M]) -> list[list[M]]:
    """Every rotation of ``members``: one worker per rotation starts on a different
    member, so that one of them loses its member when that member is killed."""
    return [[*members[i:], *members[:i]] for i in range(len(members))]


class Workers:
    """Holder processes in ``--worker`` mode, one per URL, contending for the lock
    ``orders`` and counting in the SQLite database ``db``; their reports share one queue.
    ``prefixes`` (one per URL) run each under a command, as :class:`Holder`'s ``prefix``."""

    def __init__(self, urls: Sequence[str], db: Path, *, ttl: float, namespace: str, program: Path = HOLDER,
                 prefixes: Sequence[Sequence[str]] | None = None) -> None:
        self.reports: queue.Queue[Report] = queue.Queue()
        #: Every "progress" report so far, in the order they arrived.
        self.progress: list[Report] = []
        self.holders: list[Holder] = []
        try:
            for i, url in enumerate(urls):
                prefix = prefixes[i] if prefixes is not None else ()
                self.holders.append(Holder(url, f"sqlite:{db}", ttl=ttl, namespace=namespace, worker="orders",
                                           reports=self.reports, program=program, prefix=prefix))
        except BaseException:
            self.close()
            raise

    def go(self) -> None:
        for worker in self.holders:
            worker.send("go")

    def run_until(self, count: int) -> None:
        """Wait until ``count`` increments in all have been reported; a round refused by
        the gate or unable to reach the service is allowed, anything else is not."""
        while len(self.progress) < count:
            report = self.reports.get(timeout=PROMPT)
            assert report["event"] in ("progress", "refused", "unavailable"), report
            if report["event"] == "progress":
                self.progress.append(report)

    def stop(self) -> None:
        """Tell every worker to stop, and wait until each has said it is done."""
        for worker in self.holders:
            worker.send("stop")
        done = 0
        while done < len(self.holders):
            report = self.reports.get(timeout=PROMPT)
            if report["event"] == "done":
                done += 1

    def close(self) -> None:
        for worker in self.holders:
            worker.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def check_contended_history(db: Path, progress: Sequence[Report], at_kill: int, *, after: int,
                            workers: int) -> None:
    """Check the workers' history in ``db`` against what they reported (``progress``)
    when the leader was killed after ``at_kill`` increments and at least ``after`` more
    were made: no increment lost, the gate admitted tokens only in increasing order,
    tokens after the failover are larger than before, and the lock moved between all
    ``workers``."""
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
    assert count >= at_kill + after
    reported = {r["n"]: r["token"] for r in progress}
    before = max(t for n, t in reported.items() if n <= at_kill)
    later = [t for n, t in reported.items() if n > at_kill]
    assert later, "no progress after the leader was killed"
    assert min(later) > before, "tokens after the failover are not larger"
    assert len({r["pid"] for r in progress}) == workers, "the lock did not move between the workers"
