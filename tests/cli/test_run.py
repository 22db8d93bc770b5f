"""``fencing-coord run``: the child gets the token, exits with its own status, and is
stopped when the lock is lost (the lease revoked out of band, as when it expires)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import etcd3
import pytest

from fencing_coord import LockState, cli, connect, parse_url

from .helpers import cli as run_cli
from .helpers import start_cli, wait_for_file

pytestmark = pytest.mark.etcd

CHILD = [sys.executable, str(Path(__file__).with_name("child.py"))]


def etcd_client(url: str) -> Any:
    host, port = parse_url(url).hosts[0]
    return etcd3.client(host=host, port=port, timeout=10)


def revoke_lease_of(url: str, holder: str) -> None:
    """Revoke, from an independent client, the lease behind the lock key whose value is
    ``holder`` (the identity ``run`` passes as FENCING_HOLDER)."""
    client = etcd_client(url)
    try:
        leases = {meta.lease_id for value, meta in client.get_prefix("/fencing-coord/") if value == holder.encode()}
        assert len(leases) == 1, f"expected one lock key held by {holder!r}, found leases {leases}"
        client.revoke_lease(leases.pop())
    finally:
        client.close()


def test_child_gets_token_lock_and_holder_and_its_status_is_the_exit_code(
    etcd_url: str, namespace: str, tmp_path: Path
) -> None:
    result = run_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "nightly",
                     "--", *CHILD, str(tmp_path), "3")
    assert result.returncode == 3, result.stderr
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["FENCING_LOCK"] == "nightly"
    assert int(env["FENCING_TOKEN"]) > 0
    assert env["FENCING_HOLDER"]
    # Released on exit: the next holder gets the lock at once, with a larger token.
    with connect(etcd_url, namespace=namespace) as backend:
        grant = backend.try_acquire("nightly")
        assert grant is not None
        assert grant.token > int(env["FENCING_TOKEN"])


def test_tokens_of_successive_runs_increase(etcd_url: str, namespace: str, tmp_path: Path) -> None:
    tokens = []
    for i in range(2):
        out = tmp_path / str(i)
        out.mkdir()
        result = run_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "job",
                         "--", *CHILD, str(out), "0")
        assert result.returncode == 0, result.stderr
        tokens.append(int(json.loads((out / "env.json").read_text())["FENCING_TOKEN"]))
    assert tokens[0] < tokens[1]


def test_lease_revoked_stops_the_child_with_sigterm_and_exits_76(
    etcd_url: str, namespace: str, tmp_path: Path
) -> None:
    proc = start_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "backup", "--ttl", "3",
                     "--grace", "10", "--", *CHILD, str(tmp_path))
    try:
        env = json.loads(wait_for_file(tmp_path / "env.json"))
        revoke_lease_of(etcd_url, env["FENCING_HOLDER"])
        # The keepalive notices within ttl/3; then SIGTERM, to which the child exits.
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (tmp_path / "terminated").read_text() == str(int(signal.SIGTERM))
    assert proc.returncode == cli.EXIT_LOST, err
    assert "lock 'backup' lost" in err


def test_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    etcd_url: str, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "ignore-term").touch()
    proc = start_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "stubborn", "--ttl", "3",
                     "--grace", "0.5", "--", *CHILD, str(tmp_path))
    try:
        env = json.loads(wait_for_file(tmp_path / "env.json"))
        revoke_lease_of(etcd_url, env["FENCING_HOLDER"])
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (tmp_path / "terminated").exists()  # it got SIGTERM, ignored it ...
    assert proc.returncode == cli.EXIT_LOST
    with pytest.raises(ProcessLookupError):  # ... and is gone all the same
        os.kill(env["pid"], 0)


def test_lock_timeout_exits_75_without_running_the_command(
    etcd_url: str, namespace: str, tmp_path: Path
) -> None:
    with connect(etcd_url, namespace=namespace) as other, other.lock("busy"):
        result = run_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "busy",
                         "--timeout", "0.5", "--", *CHILD, str(tmp_path), "0")
    assert result.returncode == cli.EXIT_TIMEOUT
    assert "not acquired within 0.5 s" in result.stderr
    assert not (tmp_path / "env.json").exists()


def test_missing_command_exits_127_and_releases(etcd_url: str, namespace: str) -> None:
    result = run_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "job",
                     "--", "/nonexistent/fencing-coord-test-command")
    assert result.returncode == cli.EXIT_NOT_FOUND
    assert "command not found" in result.stderr
    with connect(etcd_url, namespace=namespace) as backend:
        assert backend.describe("job").holder is None


def test_sigterm_to_run_is_passed_to_the_child_and_the_lock_released(
    etcd_url: str, namespace: str, tmp_path: Path
) -> None:
    proc = start_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "svc",
                     "--", *CHILD, str(tmp_path))
    try:
        env = json.loads(wait_for_file(tmp_path / "env.json"))
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert (tmp_path / "terminated").exists()
    assert proc.returncode == 0  # the child's own status: it handled SIGTERM and exited 0
    with connect(etcd_url, namespace=namespace) as backend:
        state = backend.describe("svc")
    assert state.holder is None, f"still held by {state.holder} (run's holder was {env['FENCING_HOLDER']})"


def test_child_runs_in_its_own_process_group(etcd_url: str, namespace: str, tmp_path: Path) -> None:
    result = run_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "grp",
                     "--", *CHILD, str(tmp_path), "0")
    assert result.returncode == 0
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["pgid"] == env["pid"]


def test_child_killed_by_a_signal_exits_128_plus_signal(etcd_url: str, namespace: str) -> None:
    result = run_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "sig",
                     "--", "sh", "-c", "kill -KILL $$")
    assert result.returncode == 128 + int(signal.SIGKILL)



def test_sigterm_while_waiting_leaves_the_queue_at_once(etcd_url: str, namespace: str, tmp_path: Path) -> None:
    with connect(etcd_url, namespace=namespace, ttl=30) as other, other.lock("queue") as grant:
        proc = start_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "queue", "--ttl", "30",
                         "--", *CHILD, str(tmp_path), "0")
        try:
            assert proc.stderr is not None
            notice = proc.stderr.readline()
            assert f"waiting for lock 'queue', held by {other.identity}" in notice, notice
            assert other.describe("queue").waiters != ()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 128 + int(signal.SIGTERM), err
        # Its place in the queue went with it, not 30 s later when its lease would expire.
        assert other.describe("queue") == LockState("queue", grant.holder, grant.token, ())
    assert not (tmp_path / "env.json").exists()


def test_signals_ignored_when_run_started_stay_ignored_while_it_waits(etcd_url: str, namespace: str) -> None:
    """Started under nohup (SIGHUP ignored) or in the background by a script (SIGINT),
    run was asked not to stop on them: SIGHUP ended its wait (exit 129). SIGTERM,
    sent after them, still ends it."""
    with connect(etcd_url, namespace=namespace, ttl=30) as other, other.lock("queue"):
        proc = start_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "queue", "--ttl", "30",
                         "--", sys.executable, "-c", "pass", ignoring=(signal.SIGHUP, signal.SIGINT))
        try:
            assert proc.stderr is not None
            assert "waiting for lock" in proc.stderr.readline()
            for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
                proc.send_signal(sig)
            _, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
        assert proc.returncode == 128 + int(signal.SIGTERM), err
        assert other.describe("queue").waiters == ()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_waiting_never_hangs_run(etcd_url: str, namespace: str, sig: signal.Signals) -> None:
    """Sent as soon as run says it waits, so it lands while gRPC calls are in flight. A
    signal handler raising in there left a call behind, and closing the channel waited
    for it forever (grpc#19973); a signal the kernel gave another thread did not wake
    run's wait. Several tries, since where the signal lands is a matter of timing."""
    expected = 128 + int(sig) if sig != signal.SIGINT else cli.EXIT_INTERRUPTED
    for attempt in range(6):
        with connect(etcd_url, namespace=namespace, ttl=30) as other, other.lock("queue"):
            proc = start_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "queue", "--ttl", "30",
                             "--", sys.executable, "-c", "pass")
            try:
                assert proc.stderr is not None
                assert "waiting for lock" in proc.stderr.readline()
                proc.send_signal(sig)
                _, err = proc.communicate(timeout=15)
            finally:
                proc.kill()
            assert proc.returncode == expected, (attempt, err)
            assert other.describe("queue").waiters == (), attempt
