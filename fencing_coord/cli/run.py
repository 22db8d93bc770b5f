"""``fencing-coord run --lock NAME -- CMD``: run a command while holding a lock."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
from typing import Any, TextIO

from ..errors import FencingCoordError, InvalidArgument
from ..interface import Grant, LockBackend
from .exits import EXIT_CODES_HELP, EXIT_LOST, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, PROG, report
from .options import add_connection_options, open_backend, paragraph, seconds
from .signals import forward_signals, raise_on_signals
from .tether import start_tethered

__all__ = ["add_parser", "cmd_run"]


def add_parser(subparsers: Any) -> None:
    """Add ``run`` to ``subparsers`` (what ``add_subparsers`` returned)."""
    run = subparsers.add_parser(
        "run", help="run a command while holding a lock",
        usage=f"{PROG} run [--url URL] --lock NAME [--ttl S] [--timeout S] [--grace S] -- CMD [ARGS...]",
        description=paragraph(
            "Acquire the lock, run CMD with FENCING_TOKEN, FENCING_LOCK and FENCING_HOLDER in its "
            "environment, keep the lease alive while it runs, and release the lock when it exits. "
            "If the lock is lost, CMD's process group gets SIGTERM, then SIGKILL after --grace "
            "seconds. CMD and its process group never outlive this command, even if it is killed "
            "(SIGKILL included). Exits with CMD's status."
        ),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(run, ttl=True)
    run.add_argument("--lock", required=True, metavar="NAME", help="the lock to hold")
    run.add_argument("--timeout", type=seconds, metavar="S",
                     help="give up (exit 75) after waiting S seconds for the lock (default: wait forever)")
    run.add_argument("--grace", type=seconds, default=10.0, metavar="S",
                     help="seconds between SIGTERM and SIGKILL when the lock is lost (default: 10)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command and its arguments")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    """Hold ``--lock`` while CMD runs; stop CMD if the lock is lost; exit with CMD's status.

    CMD gets ``FENCING_TOKEN``, ``FENCING_LOCK`` and ``FENCING_HOLDER`` in its environment
    and runs in its own process group, so that a lost lock stops everything it started:
    SIGTERM to the group, SIGKILL after ``--grace`` seconds. SIGINT, SIGTERM and SIGHUP
    sent to this command are passed on to that group. The lease is kept alive by the
    backend's own keepalive while CMD runs, and released when CMD exits, once what CMD
    left in its group is killed. CMD and its group never outlive this command, even if
    it is SIGKILLed (see :mod:`.tether`).
    """
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise InvalidArgument("run needs a command to run: fencing-coord run --url URL --lock NAME -- CMD [ARGS...]")
    with open_backend(args) as backend:
        # Stopped while waiting (systemd, kill): leave the queue at once, by closing the
        # session, rather than leave a waiter behind until its lease expires.
        with raise_on_signals(signal.SIGTERM, signal.SIGHUP):
            grant = backend.acquire(
                args.lock, timeout=args.timeout, on_queued=lambda: _waiting_notice(backend, args.lock)
            )
        try:
            return _run_holding(grant, command, args.grace)
        finally:
            # False when the lock was lost; the backend's close then ends the session.
            with contextlib.suppress(FencingCoordError):
                backend.release(grant)


def _waiting_notice(backend: LockBackend, name: str) -> None:
    """Tell the operator why nothing happens yet (on stderr: stdout belongs to CMD)."""
    try:
        holder = backend.describe(name).holder or "another client"
    except FencingCoordError:
        holder = "another client"
    print(f"{PROG}: waiting for lock {name!r}, held by {holder}", file=sys.stderr, flush=True)


def _run_holding(grant: Grant, command: list[str], grace: float) -> int:
    env = {
        **os.environ,
        "FENCING_TOKEN": str(grant.token),
        "FENCING_LOCK": grant.name,
        "FENCING_HOLDER": grant.holder,
    }
    try:
        tethered = start_tethered(command, env)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            report(f"run: command not found: {command[0]}")
            return EXIT_NOT_FOUND
        if exc.errno in (errno.EACCES, errno.EPERM):
            report(f"run: command not executable: {command[0]}")
        else:
            report(f"run: cannot execute {command[0]}: {exc.strerror}")
        return EXIT_NOT_EXECUTABLE
    try:
        return _supervise(grant, tethered.process, command[0], grace)
    finally:
        # Whatever CMD left running in its group dies before the lock is released.
        tethered.kill_group()


def _supervise(grant: Grant, proc: subprocess.Popen[bytes], name: str, grace: float) -> int:
    """Wait until CMD exits (its status) or the grant is lost (CMD stopped, EXIT_LOST)."""
    # One event for "something happened": CMD exited, or the grant was lost.
    wake = threading.Event()
    grant.on_lost(lambda _grant: wake.set())

    def reap() -> None:
        proc.wait()
        wake.set()

    threading.Thread(target=reap, name="fencing-coord-run-wait", daemon=True).start()
    with forward_signals(proc.pid):
        wake.wait()
        if proc.poll() is None:  # lost while CMD still runs
            report(
                f"run: lock {grant.name!r} lost ({grant.lost_reason or 'lease expired'}); "
                f"stopping {name} (SIGTERM, SIGKILL after {grace:g} s)"
            )
            _stop_group(proc, grace)
            return EXIT_LOST
    return _status(proc.returncode)


def _status(returncode: int) -> int:
    """A shell's exit status for a child's returncode (``-S`` → ``128 + S``)."""
    return 128 - returncode if returncode < 0 else returncode


def _stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM CMD's process group; SIGKILL it if CMD has not exited after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    # Kill whatever is left of the group too: children CMD started must not outlive
    # the lock either.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
