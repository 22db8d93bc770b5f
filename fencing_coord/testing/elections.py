"""The election part of the conformance suite. Mix :class:`ElectionConformance` into a
test class together with a :class:`~fencing_coord.testing.BackendFixtures` subclass.

Safety is judged by the gate, as in production: every leader appends to one history
through a :class:`~fencing_coord.FencedResource` with a fenced read-modify-write, so
the history holds only writes the gate accepted, in the order it accepted them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..election import Leader, LeadershipEvent, Term
from ..errors import InvalidArgumentType, LockLost, LockTimeout, StaleTokenError
from ..gate import FencedResource
from ..interface import LockBackend
from ..stores import MemoryStore, SQLiteStore
from .fixtures import MakeBackend

__all__ = ["ElectionConformance", "ObservedLeaders", "append_history", "check_history"]

PROMPT = 30.0
RESOURCE = "leader-history"


def append_history(resource: FencedResource, term: Term, entry: str) -> bool:
    """Append ``entry`` with the term's token to the shared history, fenced: the read
    raises the resource's token to the term's, so a deposed leader's append is refused.
    Returns False when the gate refused it."""
    try:
        current = resource.read(RESOURCE, "log", token=term.token)
    except StaleTokenError:
        return False
    log = json.loads(current) if current else []
    log.append([term.token, term.grant.holder, entry])
    return resource.write(RESOURCE, "log", json.dumps(log).encode(), token=term.token).accepted


def check_history(resource: FencedResource) -> list[list[Any]]:
    """Assert the history shows one leader at a time with increasing terms; return it."""
    raw = resource.read(RESOURCE, "log")
    log: list[list[Any]] = json.loads(raw) if raw else []
    holder_of: dict[int, str] = {}
    finished: set[int] = set()
    last = -1
    for token, holder, _entry in log:
        assert holder_of.setdefault(token, holder) == holder, f"two leaders with token {token}"
        assert token >= last, f"term {token} wrote after term {last}"
        if token > last and last >= 0:
            finished.add(last)
        assert token not in finished, f"term {token} wrote again after a newer term"
        last = token
    return log


class ObservedLeaders:
    """An ``observe`` callback that records what it is told and lets a test wait for a
    report: ``handle = election.observe(seen := ObservedLeaders())``."""

    def __init__(self) -> None:
        self.leaders: list[Leader | None] = []
        self._changed = threading.Condition()

    def __call__(self, leader: Leader | None) -> None:
        with self._changed:
            self.leaders.append(leader)
            self._changed.notify_all()

    def wait_for(self, expected: Leader | None, timeout: float = PROMPT) -> None:
        """Wait until the latest report is ``expected``; AssertionError after ``timeout``."""
        with self._changed:
            reported = self._changed.wait_for(lambda: bool(self.leaders) and self.leaders[-1] == expected, timeout)
            assert reported, (self.leaders, expected)


class ElectionConformance:
    """Mixin: the election contract, against fixtures ``backend``, ``other``,
    ``make_backend`` and ``expire_session`` (see BackendFixtures)."""

    def test_leader_is_none_when_nobody_campaigns(self, backend: LockBackend) -> None:
        assert backend.election("scheduler").leader() is None

    def test_campaign_makes_a_leader_with_identity_value_and_token(
        self, backend: LockBackend, other: LockBackend
    ) -> None:
        term = backend.election("scheduler").campaign(timeout=PROMPT, value=b"http://a:8080")
        assert type(term.token) is int
        assert not term.lost
        leader = other.election("scheduler").leader()
        assert leader == Leader(backend.identity, b"http://a:8080", term.token)

    def test_campaign_times_out_cleanly(self, make_backend: MakeBackend) -> None:
        first, quitter, third = make_backend(), make_backend(), make_backend()
        term = first.election("scheduler").campaign(timeout=PROMPT)
        with pytest.raises(LockTimeout):
            quitter.election("scheduler").campaign(timeout=0.2)
        assert third.election("scheduler").leader() == Leader(first.identity, b"", term.token)
        term.resign()
        assert third.election("scheduler").campaign(timeout=0).token > term.token, "a withdrawn candidate blocks"

    def test_a_campaign_timeout_beyond_max_seconds_waits_like_none(self, backend: LockBackend) -> None:
        term = backend.election("scheduler").campaign(timeout=10**400)
        assert not term.lost
        term.resign()

    def test_term_tokens_strictly_increase(self, make_backend: MakeBackend) -> None:
        clients = [make_backend() for _ in range(3)]
        tokens = []
        for _ in range(2):
            for client in clients:
                with client.election("scheduler").campaign(timeout=PROMPT) as term:
                    tokens.append(term.token)
        assert tokens == sorted(set(tokens)), tokens

    def test_resign_hands_over_in_arrival_order(self, make_backend: MakeBackend) -> None:
        leader, *candidates = (make_backend() for _ in range(3))
        term = leader.election("scheduler").campaign(timeout=PROMPT)
        terms: list[Term] = []
        lock = threading.Lock()

        def stand(client: LockBackend, queued: threading.Event) -> None:
            elected = client.election("scheduler").campaign(timeout=PROMPT, on_queued=queued.set)
            with lock:
                terms.append(elected)
            elected.resign()

        threads = []
        for client in candidates:
            queued = threading.Event()
            thread = threading.Thread(target=stand, args=(client, queued))
            thread.start()
            threads.append(thread)
            # The next candidate must arrive after this one has joined the queue.
            assert queued.wait(PROMPT)
        term.resign()
        for thread in threads:
            thread.join(PROMPT)
        assert [t.grant.holder for t in terms] == [c.identity for c in candidates]
        assert term.token < terms[0].token < terms[1].token

    def test_proclaim_changes_the_value_not_the_token(self, backend: LockBackend, other: LockBackend) -> None:
        term = backend.election("scheduler").campaign(timeout=PROMPT, value=b"v1")
        term.proclaim(b"v2")
        assert other.election("scheduler").leader() == Leader(backend.identity, b"v2", term.token)
        term.resign()
        with pytest.raises(LockLost):
            term.proclaim(b"v3")

    def test_bad_values_are_rejected(self, backend: LockBackend) -> None:
        election = backend.election("scheduler")
        with pytest.raises(InvalidArgumentType):
            election.campaign(timeout=0, value="text")  # type: ignore[arg-type]
        assert election.leader() is None

    def test_election_and_lock_of_one_name_are_independent(self, backend: LockBackend, other: LockBackend) -> None:
        backend.acquire("scheduler", timeout=PROMPT)
        term = other.election("scheduler").campaign(timeout=PROMPT)
        assert not term.lost

    def test_observers_see_every_change_in_order_and_end_on_the_leader(self, make_backend: MakeBackend) -> None:
        clients = [make_backend() for _ in range(3)]
        watcher = make_backend()
        seen = ObservedLeaders()
        wait_seen = seen.wait_for
        handle = watcher.election("scheduler").observe(seen)
        wait_seen(None)
        expected: list[Leader | None] = [None]
        for client in clients:
            term = client.election("scheduler").campaign(timeout=PROMPT, value=client.identity.encode())
            leader = Leader(client.identity, client.identity.encode(), term.token)
            wait_seen(leader)
            expected.append(leader)
            term.resign()
            wait_seen(None)
            expected.append(None)
        final = clients[0].election("scheduler").campaign(timeout=PROMPT)
        truth = watcher.election("scheduler").leader()
        assert truth is not None
        assert truth.token == final.token
        wait_seen(truth)
        expected.append(truth)
        handle.stop()
        assert seen.leaders == expected
        tokens = [leader.token for leader in seen.leaders if leader is not None]
        assert tokens == sorted(set(tokens))

    def test_observer_stop_ends_callbacks(self, backend: LockBackend, other: LockBackend) -> None:
        calls: list[Leader | None] = []
        first = threading.Event()

        def observe(leader: Leader | None) -> None:
            calls.append(leader)
            first.set()

        handle = other.election("scheduler").observe(observe)
        assert first.wait(PROMPT)
        handle.stop()
        handle.stop()
        backend.election("scheduler").campaign(timeout=PROMPT)
        assert calls == [None]

    def test_run_passes_the_term_and_resigns(self, backend: LockBackend, other: LockBackend) -> None:
        def job(event: LeadershipEvent) -> int:
            assert not event.is_set()
            assert other.election("scheduler").leader() == Leader(backend.identity, b"", event.term.token)
            return event.term.token

        token = backend.election("scheduler").run(job, timeout=PROMPT)
        assert isinstance(token, int)
        assert other.election("scheduler").leader() is None

    def test_paused_leader_loses_its_term_and_its_write_is_refused(
        self, backend: LockBackend, other: LockBackend, expire_session: Callable[[LockBackend], None]
    ) -> None:
        resource = FencedResource(MemoryStore())
        old = backend.election("scheduler").campaign(timeout=PROMPT)
        lost = threading.Event()
        old.on_lost(lambda term: lost.set())
        assert append_history(resource, old, "before the pause")
        expire_session(backend)  # the leader is paused past its TTL
        new = other.election("scheduler").campaign(timeout=PROMPT)
        assert new.token > old.token
        assert append_history(resource, new, "successor")
        assert old.wait_lost(PROMPT)
        assert lost.wait(PROMPT)
        assert not append_history(resource, old, "late write after waking up")
        result = resource.write(RESOURCE, "other-key", b"x", token=old.token)
        assert not result.accepted
        assert [entry[2] for entry in check_history(resource)] == ["before the pause", "successor"]

    def test_run_event_is_set_when_leadership_is_lost(
        self, backend: LockBackend, other: LockBackend, expire_session: Callable[[LockBackend], None]
    ) -> None:
        def job(event: LeadershipEvent) -> bool:
            expire_session(backend)
            other.election("scheduler").campaign(timeout=PROMPT)
            return event.wait(PROMPT)

        assert backend.election("scheduler").run(job, timeout=PROMPT) is True

    def test_one_leader_at_a_time_among_many_candidates(self, make_backend: MakeBackend) -> None:
        resource = FencedResource(MemoryStore())
        clients = [make_backend() for _ in range(5)]

        def candidate(client: LockBackend) -> None:
            for round_ in range(3):
                with client.election("scheduler").campaign(timeout=PROMPT) as term:
                    assert append_history(resource, term, f"{client.identity}#{round_}")

        threads = [threading.Thread(target=candidate, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PROMPT * 2)
        log = check_history(resource)
        assert len(log) == 15
        assert len({token for token, _, _ in log}) == 15

    def test_candidate_processes_resign_or_die_one_leader_at_a_time(
        self, make_backend: MakeBackend, namespace: str, tmp_path: Path
    ) -> None:
        probe = make_backend()
        if not probe.capabilities.multiprocess:
            pytest.skip(f"{type(probe).__name__} serves one process only")
        url = getattr(self, "backend_url", None) or getattr(self, "default_url", None)
        if url is None:
            pytest.skip("candidate processes need backend_url")
        db = tmp_path / "history.db"
        # Two doomed candidates keep their first term until they are killed, as a
        # leader that crashes does; the others win three terms each and resign.
        procs = [_spawn_candidate(url, namespace, str(db), seed, probe.ttl, doomed=seed < 2) for seed in range(5)]
        # Which candidate is elected first is a race: kill each doomed one whenever it is.
        killers = [threading.Thread(target=_kill_when_elected, args=(proc,)) for proc in procs[:2]]
        for killer in killers:
            killer.start()
        for killer in killers:
            killer.join(PROMPT * 4)
        for proc in procs:
            proc.wait(PROMPT * 4)
        codes = sorted(p.returncode for p in procs)
        assert codes == [-signal.SIGKILL, -signal.SIGKILL, 0, 0, 0], codes
        log = check_history(FencedResource(SQLiteStore(str(db))))
        assert len({token for token, _, _ in log}) >= 5
        # The last doomed candidate may have been elected after every other one had
        # finished: nobody waited for its lease to end, so its term ends after the kill.
        vacant = threading.Event()

        def on_change(leader: Leader | None) -> None:
            if leader is None:
                vacant.set()

        handle = probe.election("scheduler").observe(on_change)
        try:
            assert vacant.wait(probe.ttl + PROMPT), "a killed leader's term outlived its lease"
        finally:
            handle.stop()


def _spawn_candidate(
    url: str, namespace: str, db: str, seed: int, ttl: float, doomed: bool
) -> subprocess.Popen[str]:
    code = (
        "import sys; from fencing_coord.testing.elections import _candidate_main; "
        "_candidate_main(*sys.argv[1:])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, url, namespace, db, str(seed), str(ttl), "doomed" if doomed else "normal"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _kill_when_elected(proc: subprocess.Popen[str]) -> None:
    _await_line(proc, "elected")
    proc.send_signal(signal.SIGKILL)


def _await_line(proc: subprocess.Popen[str], word: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if word in line:
            return
    raise AssertionError(f"candidate {proc.pid} exited before printing {word!r}")


def _candidate_main(url: str, namespace: str, db: str, seed: str, ttl: str, mode: str) -> None:
    """A candidate process: three terms, each appending to the history, then resigning;
    a doomed one keeps its first term until it is killed."""
    from ..config import connect

    resource = FencedResource(SQLiteStore(db))
    with connect(url, namespace=namespace, ttl=float(ttl)) as backend:
        election = backend.election("scheduler")
        for round_ in range(3):
            with election.campaign(timeout=PROMPT * 3) as term:
                print("elected", term.token, flush=True)
                if not append_history(resource, term, f"{seed}#{round_}"):
                    raise SystemExit(f"candidate {seed}: a live leader was refused")
                if mode == "doomed":
                    sys.stdin.read()  # blocks until the test kills this process
