"""``fencing-coord run`` SIGKILLed: its command and everything in the command's process
group die with it, so the command never runs unlocked next to the next holder's (issue
11, item 1)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .helpers import cli as run_cli
from .helpers import start_cli, wait_for_file

HEARTBEAT = [sys.executable, str(Path(__file__).with_name("heartbeat.py"))]


def live_members(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that have not exited (zombies excluded:
    they run nothing, and this machine's init may never reap them)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def await_exit(pids: list[int], deadline: float) -> None:
    """Return once every pid has exited; AssertionError at ``deadline`` (monotonic)."""
    poller = select.poll()
    fds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fd = os.pidfd_open(pid)
            fds.append(fd)
            poller.register(fd, select.POLLIN)
    try:
        pending = set(fds)
        while pending:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"still running at the deadline: pidfds {pending} of pids {pids}"
            for fd, _ in poller.poll(remaining * 1000):
                pending.discard(fd)
                poller.unregister(fd)
    finally:
        for fd in fds:
            os.close(fd)


def await_group_gone(pgid: int, deadline: float) -> None:
    """Return once no process of group ``pgid`` runs; AssertionError at ``deadline``.

    A bounded poll: the members not known by pid (run's guard) cannot be awaited."""
    while members := live_members(pgid):
        assert time.monotonic() < deadline, f"process group {pgid} still runs: {members}"
        time.sleep(0.01)


@pytest.fixture(params=["etcd", "zookeeper"])
def url(request: pytest.FixtureRequest) -> str:
    """A real server of each backend, from the session fixtures."""
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


@pytest.mark.slow
def test_sigkilled_run_takes_its_command_and_its_group_along(url: str, namespace: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    proc = start_cli("run", "--url", url, "--namespace", namespace, "--lock", "exclusive", "--ttl", "2",
                     "--", *HEARTBEAT, str(first))
    pgid = None
    try:
        cmd = json.loads(wait_for_file(first / "cmd.json"))
        pgid = cmd["pgid"]
        wait_for_file(first / f"beat-{cmd['grandchild']}")  # the grandchild runs too
        proc.kill()
        killed_at = time.monotonic()
        proc.wait()
        deadline = killed_at + 1.0
        await_exit([cmd["pid"], cmd["grandchild"]], deadline)
        await_group_gone(pgid, deadline)

        # The lease lapses (ttl 2); the next holder's command starts only then.
        result = run_cli("run", "--url", url, "--namespace", namespace, "--lock", "exclusive", "--ttl", "2",
                         "--", *HEARTBEAT, str(second), "--once")
        assert result.returncode == 0, result.stderr
        started = json.loads((second / "cmd.json").read_text())["start"]
        last_beats = {pid: float((first / f"beat-{pid}").read_text()) for pid in (cmd["pid"], cmd["grandchild"])}
        assert all(beat < started for beat in last_beats.values()), (
            f"the first command's group beat until {last_beats}, after the second command started at {started}"
        )
    finally:
        proc.kill()
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def test_without_its_guard_the_command_still_dies_with_run(namespace: str, tmp_path: Path) -> None:
    """The parent-death signal alone stops the command (the guard is killed first)."""
    proc = start_cli("run", "--url", f"memory://{namespace}", "--lock", "job", "--", *HEARTBEAT, str(tmp_path))
    pgid = None
    try:
        cmd = json.loads(wait_for_file(tmp_path / "cmd.json"))
        pgid = cmd["pgid"]
        (guard,) = set(live_members(pgid)) - {cmd["pid"], cmd["grandchild"]}
        os.kill(guard, signal.SIGKILL)
        await_exit([guard], time.monotonic() + 5)
        proc.kill()
        await_exit([cmd["pid"]], time.monotonic() + 1.0)
    finally:
        proc.kill()
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def test_what_the_command_leaves_in_its_group_dies_before_run_exits(namespace: str, tmp_path: Path) -> None:
    """A command that exits leaving a background process in its group: that process does
    not outlive run (it would run after the lock is released)."""
    result = run_cli("run", "--url", f"memory://{namespace}", "--lock", "job", "--",
                     "sh", "-c", f"sleep 600 & echo $! > {tmp_path / 'bg'}; exit 3")
    assert result.returncode == 3, result.stderr
    background = int((tmp_path / "bg").read_text())
    await_exit([background], time.monotonic() + 1.0)


def test_an_interrupt_while_the_command_starts_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C arriving while start_tethered waits for the exec to be confirmed (its second
    pipe read): the command, already running, is killed before the error propagates."""
    from fencing_coord.cli import tether

    pid_file = tmp_path / "pid"
    real_fdopen = os.fdopen
    calls = []

    def interrupted_fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(fd)
        if len(calls) == 2:  # 1: the guard's "ready"; 2: the command's exec report
            wait_for_file(pid_file)  # the command runs by now
            raise KeyboardInterrupt
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", interrupted_fdopen)  # the os module tether uses
    with pytest.raises(KeyboardInterrupt):
        tether.start_tethered(["sh", "-c", f"echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 600"],
                              dict(os.environ))
    monkeypatch.undo()
    await_exit([int(pid_file.read_text())], time.monotonic() + 1.0)
