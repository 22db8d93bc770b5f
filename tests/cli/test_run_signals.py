"""``fencing-coord run`` passes SIGINT/SIGTERM on to its command; a command that ignores
them is killed after ``--grace`` seconds, or at once on a second signal (issue 12, item 7).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from .helpers import start_cli, wait_for_file

CHILD = [sys.executable, str(Path(__file__).with_name("child.py"))]
KILLED = 128 + int(signal.SIGKILL)


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_kills_a_command_that_ignores_sigterm(
    second: signal.Signals, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "ignore-term").touch()
    proc = start_cli("run", "--url", f"memory://{namespace}", "--lock", "job", "--grace", "600",
                     "--", *CHILD, str(tmp_path))
    try:
        env = json.loads(wait_for_file(tmp_path / "env.json"))
        proc.send_signal(signal.SIGTERM)
        wait_for_file(tmp_path / "terminated")  # it got SIGTERM and ignores it
        proc.send_signal(second)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == KILLED, err
    assert f"{second.name} again: killing" in err
    with pytest.raises(ProcessLookupError):
        os.kill(env["pid"], 0)


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_period(namespace: str, tmp_path: Path) -> None:
    (tmp_path / "ignore-term").touch()
    proc = start_cli("run", "--url", f"memory://{namespace}", "--lock", "job", "--grace", "0.5",
                     "--", *CHILD, str(tmp_path))
    try:
        wait_for_file(tmp_path / "env.json")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    assert (tmp_path / "terminated").exists()
    assert proc.returncode == KILLED, err
    assert "still running 0.5 s after SIGTERM" in err
    assert 0.5 <= elapsed < 5, elapsed


def test_a_signal_that_arrives_as_the_command_starts_is_passed_on(namespace: str) -> None:
    # The command sends SIGHUP to run as its first act: run had not yet installed its
    # handlers then (a fresh-clone CI run hit it), so SIGHUP's default action killed run,
    # and the command, never told, outlived it.
    script = 'trap \'hup=1\' HUP; kill -HUP "$PPID"; while [ -z "$hup" ]; do sleep 0.05; done; exit 5'
    for _ in range(3):
        proc = start_cli("run", "--url", f"memory://{namespace}", "--lock", "job", "--grace", "0.2",
                         "--", "sh", "-c", script)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 5, err


def test_sighup_is_passed_on_without_starting_the_grace_period(namespace: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    # Once it got SIGHUP, the command lives on for 1 s (5 times --grace), then exits 5.
    script = (f"trap 'hup=1' HUP; touch {ready}; "
              'while [ -z "$hup" ]; do sleep 0.05; done; sleep 1; exit 5')
    proc = start_cli("run", "--url", f"memory://{namespace}", "--lock", "job", "--grace", "0.2",
                     "--", "sh", "-c", script)
    try:
        wait_for_file(ready)
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 5, err


def test_a_command_inherits_the_signals_ignored_when_run_started(namespace: str) -> None:
    # As under nohup (SIGHUP) and for a command a script starts in the background
    # (SIGINT): CMD got their default action instead (run's handlers, reset by exec).
    script = ("import signal; print(*(signal.getsignal(s) is signal.SIG_IGN"
              " for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)))")
    proc = start_cli("run", "--url", f"memory://{namespace}", "--lock", "job",
                     "--", sys.executable, "-c", script, ignoring=(signal.SIGHUP, signal.SIGINT))
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.split() == ["True", "True", "False"]
