"""The whole lock and election conformance suites on a single etcd node and on a
3-member cluster."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest

from fencing_coord.gate import FencedResource
from fencing_coord.stores import SQLiteStore
from fencing_coord.testing import ElectionConformance, LockBackendConformance, MakeBackend
from fencing_coord.testing.elections import PROMPT, _await_line, _spawn_candidate, check_history

from .conftest import EtcdFixtures

pytestmark = pytest.mark.etcd


class TestEtcdSingle(LockBackendConformance, EtcdFixtures):
    target_fixture = "etcd_single"


class TestEtcdCluster(LockBackendConformance, EtcdFixtures):
    target_fixture = "etcd_cluster"


class _DoomedInAnyOrder(EtcdFixtures):
    """Stand-in for the suite's test of the same name, with the same processes and
    assertions, until that test kills its two doomed candidates in whichever order they
    are elected. It waits for candidate 0 first: when candidate 1 wins the first term
    (which process joins the queue first is a race) it waits behind a leader it never
    kills, until the candidates' 90 s campaign timeout fails it."""

    def test_candidate_processes_resign_or_die_one_leader_at_a_time(
        self, make_backend: MakeBackend, namespace: str, tmp_path: Path
    ) -> None:
        probe = make_backend()
        db = tmp_path / "history.db"
        procs = [_spawn_candidate(self.target.url, namespace, str(db), seed, probe.ttl, doomed=seed < 2)
                 for seed in range(5)]

        def kill_when_elected(proc: subprocess.Popen[str]) -> None:
            _await_line(proc, "elected")
            proc.send_signal(signal.SIGKILL)

        killers = [threading.Thread(target=kill_when_elected, args=(proc,)) for proc in procs[:2]]
        for killer in killers:
            killer.start()
        for proc in procs:
            proc.wait(PROMPT * 4)
        for killer in killers:
            killer.join(PROMPT)
        codes = sorted(p.returncode for p in procs)
        assert codes == [-signal.SIGKILL, -signal.SIGKILL, 0, 0, 0], codes
        log = check_history(FencedResource(SQLiteStore(str(db))))
        assert len({token for token, _, _ in log}) >= 5
        assert probe.election("scheduler").leader() is None


class TestEtcdElectionSingle(_DoomedInAnyOrder, ElectionConformance):
    target_fixture = "etcd_single"


class TestEtcdElectionCluster(_DoomedInAnyOrder, ElectionConformance):
    target_fixture = "etcd_cluster"
