"""``fencing-coord run --lock NAME -- CMD``: run a command while holding a lock."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..errors import FencingCoordError, InvalidArgument, LockTimeout
from ..interface import Grant, LockBackend
from .exits import EXIT_LOST, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, PROG, RUN_EXIT_CODES_HELP, report
from .options import add_connection_options, connect_timeout, open_backend, paragraph, process_started, seconds
from .signals import SignalInbox, Terminated
from .tether import start_tethered

__all__ = ["add_parser", "cmd_run"]

# Seconds to wait for the acquiring thread once its backend is closed (it ends at once).
_WORKER_GRACE = 5.0


def add_parser(subparsers: Any) -> None:
    """Add ``run`` to ``subparsers`` (what ``add_subparsers`` returned)."""
    run = subparsers.add_parser(
        "run", help="run a command while holding a lock",
        usage=f"{PROG} run [--url URL] [--namespace NS] --lock NAME [--ttl S] [--timeout S] [--grace S]"
              " -- CMD [ARGS...]",
        description=paragraph(
            "Acquire the lock, run CMD with FENCING_TOKEN, FENCING_LOCK and FENCING_HOLDER in its "
            "environment, keep the lease alive while it runs, and release the lock when it exits. "
            "If the lock is lost, CMD's process group gets SIGTERM, then SIGKILL after --grace "
            "seconds. SIGINT and SIGTERM sent to this command are passed on to CMD's group; if CMD "
            "has not exited --grace seconds later, or on a second SIGINT/SIGTERM, the group gets "
            "SIGKILL. SIGHUP is passed on as it is. A signal ignored when this command starts (nohup) "
            "stays ignored, by CMD too. CMD and its process group never outlive this "
            "command, even if it is killed (SIGKILL included). Exits with CMD's status."
        ),
        epilog=RUN_EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(run, ttl=True)
    run.add_argument("--lock", required=True, metavar="NAME", help="the lock to hold")
    run.add_argument("--timeout", type=seconds, metavar="S",
                     help="give up after S seconds without the lock (exit 75), or without the server (exit "
                          "69), counted from the start of this command (default: wait forever)")
    run.add_argument("--grace", type=seconds, default=10.0, metavar="S",
                     help="seconds between SIGTERM (lock lost, or SIGINT/SIGTERM passed on) and SIGKILL (default: 10)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command and its arguments")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    """Hold ``--lock`` while CMD runs; stop CMD if the lock is lost; exit with CMD's status.

    CMD gets ``FENCING_TOKEN``, ``FENCING_LOCK`` and ``FENCING_HOLDER`` in its environment
    and runs in its own process group, so that a lost lock stops everything it started:
    SIGTERM to the group, SIGKILL after ``--grace`` seconds. SIGINT, SIGTERM and SIGHUP
    sent to this command are passed on to that group; SIGKILL follows a SIGINT/SIGTERM
    after ``--grace`` seconds, or at once on a second one; those ignored when this command
    started stay ignored (:mod:`.signals`). The lease is kept alive by the
    backend's own keepalive while CMD runs, and released when CMD exits, once what CMD
    left in its group is killed. CMD and its group never outlive this command, even if
    it is SIGKILLed (see :mod:`.tether`).
    """
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise InvalidArgument("run needs a command to run: fencing-coord run --url URL --lock NAME -- CMD [ARGS...]")
    # --timeout bounds everything before CMD starts, connecting included, from the start
    # of this process (its imports can take a while on a loaded machine).
    deadline = None if args.timeout is None else process_started() + args.timeout
    extra = {} if deadline is None else {"timeout": connect_timeout(args, deadline)}
    with open_backend(args, **extra) as backend:
        try:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            grant = _acquire_until_signalled(backend, args.lock, wait,
                                             on_queued=lambda: _waiting_notice(backend, args.lock))
        except LockTimeout as exc:
            # In the user's terms: --timeout, not what was left of it after connecting.
            raise LockTimeout(f"lock {args.lock!r} not acquired within {args.timeout:g} s: "
                              f"{_holder_of(backend, args.lock)}") from exc
        try:
            return _run_holding(grant, command, args.grace)
        finally:
            # False when the lock was lost; the backend's close then ends the session.
            with contextlib.suppress(FencingCoordError):
                backend.release(grant)


def _acquire_until_signalled(backend: LockBackend, name: str, timeout: float | None,
                             on_queued: Callable[[], object]) -> Grant:
    """``backend.acquire`` on a helper thread, while this (the main) thread waits for it,
    for SIGTERM or SIGHUP (stopped while waiting: systemd, kill), or for Ctrl-C. Then the
    backend is closed, which withdraws the waiter at once (rather than leave it queued
    until its lease expires), and :class:`Terminated` (or KeyboardInterrupt) is raised.

    The signals never interrupt the client library: a signal handler that raised while a
    gRPC call was in flight left that call behind, and closing its channel then waited for
    it forever (grpc#19973): ``run`` hung instead of exiting."""
    outcome: list[Grant | BaseException] = []
    with _Wakeup() as wakeup:

        def work() -> None:
            try:
                outcome.append(backend.acquire(name, timeout=timeout, on_queued=on_queued))
            except BaseException as exc:  # handed to the main thread, which raises it
                outcome.append(exc)
            finally:
                wakeup.set()

        worker = threading.Thread(target=work, name="fencing-coord-run-acquire", daemon=True)
        inbox = SignalInbox(wakeup.write_fd)
        try:
            with inbox.collecting(signal.SIGTERM, signal.SIGHUP):
                worker.start()
                while not outcome:
                    wakeup.wait(None)
                    received = inbox.take()
                    if received:
                        raise Terminated(received[0])
        except BaseException:  # Terminated, or KeyboardInterrupt (Ctrl-C)
            backend.close()  # the waiter raises "closed" and ends
            worker.join(_WORKER_GRACE)
            raise
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _waiting_notice(backend: LockBackend, name: str) -> None:
    """Tell the operator why nothing happens yet (on stderr: stdout belongs to CMD)."""
    try:
        holder = backend.describe(name).holder or "another client"
    except FencingCoordError:
        holder = "another client"
    print(f"{PROG}: waiting for lock {name!r}, held by {holder}", file=sys.stderr, flush=True)


def _holder_of(backend: LockBackend, name: str) -> str:
    """Who holds ``name`` now, as the end of a sentence ("held by X (token N)")."""
    try:
        state = backend.describe(name)
    except FencingCoordError as exc:
        return f"its holder could not be read ({exc})"
    if state.holder is None:
        return "it has no holder now (released since)"
    return f"held by {state.holder} (token {state.token})"


def _run_holding(grant: Grant, command: list[str], grace: float) -> int:
    env = {
        **os.environ,
        "FENCING_TOKEN": str(grant.token),
        "FENCING_LOCK": grant.name,
        "FENCING_HOLDER": grant.holder,
    }
    # Collect signals from before the command starts: one that came between its start
    # and _supervise would get its default action (SIGHUP, SIGTERM: run dies, and the
    # command, never told, outlives it). What was collected is passed on once it runs.
    with _Wakeup() as wakeup:
        inbox = SignalInbox(wakeup.write_fd)
        with inbox.collecting(signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            return _start_and_supervise(grant, command, env, grace, wakeup, inbox)


def _start_and_supervise(grant: Grant, command: list[str], env: dict[str, str], grace: float, wakeup: _Wakeup,
                         inbox: SignalInbox) -> int:
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
        return _supervise(grant, tethered.process, command[0], grace, wakeup, inbox)
    finally:
        # Whatever CMD left running in its group dies before the lock is released.
        tethered.kill_group()


def _supervise(grant: Grant, proc: subprocess.Popen[bytes], name: str, grace: float, wakeup: _Wakeup,
               inbox: SignalInbox) -> int:
    """Wait until CMD exits; return its status, or EXIT_LOST if the grant was lost first.

    Stopping CMD (the grant lost, or SIGINT/SIGTERM sent to run): its group gets SIGTERM
    (the signal itself, when forwarded), then SIGKILL once ``grace`` seconds have passed
    or on a second SIGINT/SIGTERM. SIGHUP is passed on as it is.
    """
    lost = threading.Event()

    def on_lost(_grant: Grant) -> None:
        lost.set()
        wakeup.set()

    grant.on_lost(on_lost)

    def reap() -> None:
        proc.wait()
        wakeup.set()

    threading.Thread(target=reap, name="fencing-coord-run-wait", daemon=True).start()
    stopping = _Stopping(proc.pid, name, grace)
    while proc.returncode is None and proc.poll() is None:
        for signum in inbox.take():  # first: what came while the command was starting
            stopping.on_signal(signum)
        if lost.is_set() and not stopping.lost:
            report(
                f"run: lock {grant.name!r} lost ({grant.lost_reason or 'lease expired'}); "
                f"stopping {name} (SIGTERM, SIGKILL after {grace:g} s)"
            )
            stopping.on_lost()
        stopping.check_deadline()
        wakeup.wait(stopping.time_left())
    return EXIT_LOST if stopping.lost else _status(proc.returncode)


class _Stopping:
    """How far stopping CMD's process group ``pgid`` has gone: nothing yet, SIGTERM (or
    the forwarded signal) sent with a deadline for SIGKILL, or SIGKILL sent."""

    def __init__(self, pgid: int, name: str, grace: float) -> None:
        self.pgid = pgid
        self.name = name
        self.grace = grace
        self.lost = False
        self._kill_at: float | None = None
        self._killed = False

    def time_left(self) -> float | None:
        """Seconds until SIGKILL is due; None while nothing is."""
        if self._kill_at is None or self._killed:
            return None
        return max(0.0, self._kill_at - time.monotonic())

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self._send(signal.SIGHUP)
        elif self._kill_at is None:
            self._send(signal.Signals(signum))
            self._kill_at = time.monotonic() + self.grace
        else:
            self._kill(f"{signal.Signals(signum).name} again")

    def on_lost(self) -> None:
        self.lost = True
        self._send(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        self._kill_at = deadline if self._kill_at is None else min(self._kill_at, deadline)

    def check_deadline(self) -> None:
        left = self.time_left()
        if left is not None and left <= 0:
            self._kill(f"still running {self.grace:g} s after SIGTERM")

    def _kill(self, why: str) -> None:
        if not self._killed:
            report(f"run: {why}: killing {self.name} (SIGKILL to its process group)")
            self._send(signal.SIGKILL)
            self._killed = True

    def _send(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)


class _Wakeup:
    """A pipe that wakes :meth:`wait`: :meth:`set` from any thread, or a byte written to
    :attr:`write_fd` by a signal handler. Closed on exit; a late :meth:`set` is ignored."""

    def __init__(self) -> None:
        self._read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)  # a full pipe already wakes the reader
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> _Wakeup:
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._closed = True
            os.close(self._read_fd)
            os.close(self.write_fd)

    def set(self) -> None:
        with self._lock:
            if not self._closed:
                with contextlib.suppress(BlockingIOError):
                    os.write(self.write_fd, b"w")

    def wait(self, timeout: float | None) -> None:
        """Return when woken (the wakeups are consumed) or after ``timeout`` seconds."""
        readable, _, _ = select.select([self._read_fd], [], [], timeout)
        if readable:
            os.read(self._read_fd, 4096)


def _status(returncode: int) -> int:
    """A shell's exit status for a child's returncode (``-S`` → ``128 + S``)."""
    return 128 - returncode if returncode < 0 else returncode
