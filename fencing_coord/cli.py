"""``fencing-coord``: the command line.

    fencing-coord demo [--url URL ...]                 the pause scenario, unfenced vs fenced
    fencing-coord run --url URL --lock NAME -- CMD...  run CMD while holding a lock
    fencing-coord status --url URL [NAME ...]          holders, tokens and waiters
    fencing-coord servers up|down|status               local development servers

Every subcommand is one function here (``cmd_demo``, ``cmd_run``, ``cmd_status``,
``cmd_servers_*``); the demo scenario lives in :mod:`fencing_coord.demo`, the detached
development servers in :mod:`fencing_coord.devservers`. :func:`main` maps the library's
errors to the exit codes below, prints one line (``fencing-coord: error: ...``) instead
of a traceback, and returns the code.

==== ===================================================================================
code meaning
==== ===================================================================================
0    success (``run``: CMD exited 0; ``demo``: fenced=refused and unfenced=corrupted)
1    ``demo``: the scenario did not come out as expected, or a run failed
2    bad arguments, bad URL or option, unusable configuration
69   a server cannot be reached, or cannot be started (EX_UNAVAILABLE)
75   ``run``: the lock was not acquired within ``--timeout`` (EX_TEMPFAIL)
76   ``run``: the lock was lost while CMD ran; CMD was stopped
126  ``run``: CMD is not executable
127  ``run``: CMD was not found
130  interrupted (Ctrl-C)
N    ``run``: CMD's own exit status; 128+S when CMD was killed by signal S
==== ===================================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, TextIO

from . import __version__
from .config import ENV_VAR, connect
from .devservers import DevServers, MissingSoftware
from .errors import (
    BackendUnavailable,
    ConfigurationError,
    FencingCoordError,
    InvalidArgument,
    InvalidArgumentType,
    LockTimeout,
    NotSupported,
)
from .interface import Grant, LockBackend, LockState

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_LOST",
    "EXIT_NOT_EXECUTABLE",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
EXIT_TIMEOUT = 75
EXIT_LOST = 76
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130

PROG = "fencing-coord"

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    demo: the scenario did not come out as expected (or a run failed)
  2    bad arguments, bad URL or option
  69   a server cannot be reached or started
  75   run: the lock was not acquired within --timeout
  76   run: the lock was lost while CMD ran; CMD was stopped
  126  run: CMD is not executable
  127  run: CMD was not found
  130  interrupted
  N    run: CMD's own exit status (128+S when killed by signal S)
"""


# -- demo ------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """The pause scenario on every backend, unfenced then fenced; exit 0 when every fenced
    run refused the stale write and every unfenced run was corrupted by it."""
    from .demo import local_servers, run_demo

    with contextlib.ExitStack() as stack:
        urls: list[str] = list(args.url or [])
        if not urls:
            urls = stack.enter_context(local_servers(out))
        outcomes = run_demo(urls, out, ttl=args.ttl)
    if all(o.expected for o in outcomes):
        out.write("\nas expected: without fencing the paused holder's stale write wins; with fencing it is refused.\n")
        return EXIT_OK
    out.write("\nUNEXPECTED: some run did not show fenced=refused and unfenced=corrupted (see above).\n")
    return EXIT_FAILED


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    """Hold ``--lock`` while CMD runs; stop CMD if the lock is lost; exit with CMD's status.

    CMD gets ``FENCING_TOKEN``, ``FENCING_LOCK`` and ``FENCING_HOLDER`` in its environment
    and runs in its own process group, so that a lost lock stops everything it started:
    SIGTERM to the group, SIGKILL after ``--grace`` seconds. SIGINT, SIGTERM and SIGHUP
    sent to this command are passed on to that group. The lease is kept alive by the
    backend's own keepalive while CMD runs, and released when CMD exits.
    """
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise InvalidArgument("run needs a command to run: fencing-coord run --url URL --lock NAME -- CMD [ARGS...]")
    with _backend(args) as backend:
        # Stopped while waiting (systemd, kill): leave the queue at once, by closing the
        # session, rather than leave a waiter behind until its lease expires.
        with _raise_on_signals(signal.SIGTERM, signal.SIGHUP):
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
    print(f"fencing-coord: waiting for lock {name!r}, held by {holder}", file=sys.stderr, flush=True)


def _run_holding(grant: Grant, command: list[str], grace: float) -> int:
    env = {
        **os.environ,
        "FENCING_TOKEN": str(grant.token),
        "FENCING_LOCK": grant.name,
        "FENCING_HOLDER": grant.holder,
    }
    try:
        proc = subprocess.Popen(command, env=env, process_group=0)
    except FileNotFoundError:
        _error(f"run: command not found: {command[0]}")
        return EXIT_NOT_FOUND
    except PermissionError:
        _error(f"run: command not executable: {command[0]}")
        return EXIT_NOT_EXECUTABLE

    # One event for "something happened": CMD exited, or the grant was lost.
    wake = threading.Event()
    grant.on_lost(lambda _grant: wake.set())

    def reap() -> None:
        proc.wait()
        wake.set()

    threading.Thread(target=reap, name="fencing-coord-run-wait", daemon=True).start()
    with _forward_signals(proc.pid):
        wake.wait()
        if proc.poll() is None:  # lost while CMD still runs
            _error(
                f"run: lock {grant.name!r} lost ({grant.lost_reason or 'lease expired'}); "
                f"stopping {command[0]} (SIGTERM, SIGKILL after {grace:g} s)"
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


class _Terminated(Exception):
    """SIGTERM or SIGHUP arrived while ``run`` waited for its lock."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum} while waiting for the lock")
        self.signum = signum


@contextlib.contextmanager
def _signals_handled_by(handler: Callable[[int, FrameType | None], None], *sigs: signal.Signals) -> Iterator[None]:
    """Install ``handler`` for ``sigs`` while the block runs; restore the previous ones."""
    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise_on_signals(*sigs: signal.Signals) -> contextlib.AbstractContextManager[None]:
    """Turn ``sigs`` into :class:`_Terminated` in the main thread while the block runs."""

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise _Terminated(signum)

    return _signals_handled_by(terminate, *sigs)


def _forward_signals(pgid: int) -> contextlib.AbstractContextManager[None]:
    """Pass SIGINT/SIGTERM/SIGHUP on to process group ``pgid`` while the block runs."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)

    return _signals_handled_by(forward, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# -- status ----------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    """Print holder, token and waiters of each NAME (or of every lock the backend can list)."""
    with _backend(args, identity="fencing-coord-status") as backend:
        names: list[str] = list(args.names)
        if not names:
            try:
                names = backend.locks()
            except NotSupported as exc:
                raise InvalidArgument(
                    f"{exc}; name the locks to show: fencing-coord status --url URL NAME..."
                ) from exc
        states = [backend.describe(name) for name in names]
    if args.json:
        json.dump({"namespace": args.namespace, "locks": [_state_dict(s) for s in states]}, out, indent=2)
        out.write("\n")
        return EXIT_OK
    if not states:
        out.write(f"no locks are held or waited for in namespace {args.namespace!r}\n")
        return EXIT_OK
    rows = [("LOCK", "HOLDER", "TOKEN", "WAITERS")]
    for state in states:
        waiters = ", ".join(state.waiters) if state.waiters else "-"
        rows.append((state.name, state.holder or "-", "-" if state.token is None else str(state.token), waiters))
    out.write(_table(rows))
    return EXIT_OK


def _state_dict(state: LockState) -> dict[str, Any]:
    return {"name": state.name, "holder": state.holder, "token": state.token, "waiters": list(state.waiters)}


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in rows)


# -- servers ---------------------------------------------------------------------------------


def cmd_servers_up(args: argparse.Namespace, out: TextIO) -> int:
    """Start local etcd/ZooKeeper servers that outlive this command; print their URLs."""
    servers = DevServers(args.state_dir)
    state = servers.up(etcd=args.etcd, zookeeper=args.zookeeper, log=out if not args.json else None)
    if args.json:
        json.dump(state, out, indent=2)
        out.write("\n")
        return EXIT_OK
    _print_services(state, out)
    urls = [s["url"] for s in state.get("services", {}).values()]
    if urls:
        out.write(f"\nexport {ENV_VAR}={urls[0]}\n")
        out.write(f"stop them with: {PROG} servers down" + _state_dir_arg(args) + "\n")
    return EXIT_OK


def cmd_servers_down(args: argparse.Namespace, out: TextIO) -> int:
    """Stop the servers ``servers up`` started and delete their data."""
    stopped = DevServers(args.state_dir).down()
    out.write(("stopped: " + ", ".join(stopped) if stopped else "no servers were running") + "\n")
    return EXIT_OK


def cmd_servers_status(args: argparse.Namespace, out: TextIO) -> int:
    """Show what ``servers up`` started and whether it still runs; exit 69 if a server
    that was started no longer answers."""
    state = DevServers(args.state_dir).status()
    if args.json:
        json.dump(state, out, indent=2)
        out.write("\n")
    elif not state.get("services"):
        out.write(f"no servers running (start them with: {PROG} servers up)\n")
    else:
        _print_services(state, out)
    healthy = all(p["running"] and p["answers"] for s in state.get("services", {}).values() for p in s["processes"])
    return EXIT_OK if healthy else EXIT_UNAVAILABLE


def _print_services(state: dict[str, Any], out: TextIO) -> None:
    for name, service in state.get("services", {}).items():
        out.write(f"{name} ({service['mode']}): {service['url']}\n")
        for proc in service["processes"]:
            health = "running" if proc["running"] and proc["answers"] else "running, not answering" \
                if proc["running"] else "NOT RUNNING"
            out.write(f"  {proc['name']:<4} pid {proc['pid']:<8} port {proc['port']:<6} {health}\n")
        out.write(f"  data and logs: {service['dir']}\n")


def _state_dir_arg(args: argparse.Namespace) -> str:
    return f" --state-dir {args.state_dir}" if args.state_dir else ""


# -- plumbing ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _backend(args: argparse.Namespace, **extra: Any) -> Iterator[LockBackend]:
    """Connect to ``--url`` (or ``$FENCING_COORD_URL``) with the common options given."""
    url = args.url or os.environ.get(ENV_VAR)
    if not url:
        raise ConfigurationError(f"no backend URL: pass --url URL or set ${ENV_VAR} (e.g. etcd://127.0.0.1:2379)")
    options: dict[str, Any] = dict(extra)
    if getattr(args, "ttl", None) is not None:
        options["ttl"] = args.ttl
    if args.namespace is not None:
        options["namespace"] = args.namespace
    with connect(url, **options) as backend:
        if args.namespace is None:
            args.namespace = backend.namespace
        yield backend


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be a finite number >= 0")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _add_connection_options(parser: argparse.ArgumentParser, *, ttl: bool = False) -> None:
    parser.add_argument("--url", help=f"backend URL, e.g. etcd://127.0.0.1:2379 (default: ${ENV_VAR})")
    parser.add_argument("--namespace", help="key prefix isolating one application (default: the URL's, or 'default')")
    if ttl:
        parser.add_argument("--ttl", type=_positive_seconds, metavar="S",
                            help="lease/session TTL in seconds (default: the URL's, or 10)")


def _para(text: str) -> str:
    """``text`` wrapped for a terminal (the raw formatter keeps the exit-code table as is)."""
    return textwrap.fill(text, 88)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fencing-coord`` (each subcommand sets ``func``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Distributed locks with fencing tokens (etcd, ZooKeeper).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo", help="the pause scenario: a paused holder's stale write, unfenced vs fenced",
        description=_para(
            "A lock holder is paused (SIGSTOP) past its lease; a successor acquires the lock and "
            "writes; the holder wakes and writes with its old token. Run once through an unfenced "
            "resource (the stale write wins: corrupted) and once through a fenced one (refused), on "
            "each backend. Without --url, local etcd and ZooKeeper servers are started from the "
            "binaries on PATH and stopped at the end."
        ),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--url", action="append", metavar="URL",
                      help="run against this existing cluster instead (repeatable: one per backend)")
    demo.add_argument("--ttl", type=_positive_seconds, default=2.0, metavar="S",
                      help="lease/session TTL of the demo's processes (default: 2; servers may raise it)")
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser(
        "run", help="run a command while holding a lock",
        usage=f"{PROG} run [--url URL] --lock NAME [--ttl S] [--timeout S] [--grace S] -- CMD [ARGS...]",
        description=_para(
            "Acquire the lock, run CMD with FENCING_TOKEN, FENCING_LOCK and FENCING_HOLDER in its "
            "environment, keep the lease alive while it runs, and release the lock when it exits. "
            "If the lock is lost, CMD's process group gets SIGTERM, then SIGKILL after --grace "
            "seconds. Exits with CMD's status."
        ),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(run, ttl=True)
    run.add_argument("--lock", required=True, metavar="NAME", help="the lock to hold")
    run.add_argument("--timeout", type=_seconds, metavar="S",
                     help="give up (exit 75) after waiting S seconds for the lock (default: wait forever)")
    run.add_argument("--grace", type=_seconds, default=10.0, metavar="S",
                     help="seconds between SIGTERM and SIGKILL when the lock is lost (default: 10)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command and its arguments")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser(
        "status", help="holders, tokens and waiters of locks",
        description="Show who holds each lock, with which fencing token, and who waits, in order.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("names", nargs="*", metavar="NAME",
                        help="locks to show (default: every lock held or waited for, if the backend can list them)")
    status.set_defaults(func=cmd_status)

    servers = sub.add_parser(
        "servers", help="local etcd / ZooKeeper servers for development",
        description=_para(
            "Start local servers from the binaries on PATH (etcd; ZooKeeper with java), detached "
            "from this command, and print their URLs. State, data and logs live under "
            "--state-dir (default: $FENCING_COORD_STATE_DIR, else $XDG_STATE_HOME/fencing-coord, "
            "else ~/.local/state/fencing-coord)."
        ),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    servers_sub = servers.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = servers_sub.add_parser("up", help="start servers and print their URLs")
    up.add_argument("--etcd", choices=["single", "cluster", "none"], default="single",
                    help="one etcd node, a 3-member cluster, or none (default: single)")
    up.add_argument("--zookeeper", choices=["standalone", "ensemble", "none"], default="standalone",
                    help="one ZooKeeper server, a 3-node ensemble, or none (default: standalone)")
    up.set_defaults(func=cmd_servers_up)
    down = servers_sub.add_parser("down", help="stop the servers and delete their data")
    down.set_defaults(func=cmd_servers_down)
    st = servers_sub.add_parser("status", help="show the servers, their URLs and whether they run")
    st.set_defaults(func=cmd_servers_status)
    for action in (up, down, st):
        action.add_argument("--state-dir", metavar="DIR", help="where the servers' state, data and logs live")
    for action in (up, st):
        action.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


_EXIT_FOR: tuple[tuple[type[BaseException], int], ...] = (
    (MissingSoftware, EXIT_UNAVAILABLE),  # before its base class, ConfigurationError
    (ConfigurationError, EXIT_USAGE),
    (InvalidArgument, EXIT_USAGE),
    (InvalidArgumentType, EXIT_USAGE),
    (BackendUnavailable, EXIT_UNAVAILABLE),
    (LockTimeout, EXIT_TIMEOUT),
)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Bad arguments print argparse's usage message and return 2. Library errors print one
    line, ``fencing-coord: error: <message>``, and return the code of the table in the
    module docstring.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    # The library logs what happens in the background (a lease lost, a member gone) as
    # warnings; show them as this command's messages. No-op if logging is configured.
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    try:
        return func(args, out or sys.stdout)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except _Terminated as exc:
        _error(str(exc))
        return 128 + exc.signum
    except FencingCoordError as exc:
        _error(f"error: {exc}")
        for cls, code in _EXIT_FOR:
            if isinstance(exc, cls):
                return code
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
