"""``fencing-coord``: the command line.

    fencing-coord demo [--url URL ...]                 the pause scenario, unfenced vs fenced
    fencing-coord run --url URL --lock NAME -- CMD...  run CMD while holding a lock
    fencing-coord status --url URL [NAME ...]          holders, tokens and waiters
    fencing-coord status --store URL --resource NAME   highest token and latest decisions
    fencing-coord servers up|down|status               local development servers

One module per subcommand, each adding its own parser and its ``cmd_*`` function:
:mod:`.demo`, :mod:`.run` (with :mod:`.signals`), :mod:`.locks` (``status``; with
``--store``, :mod:`.resources`), :mod:`.servers`; the options they share are in
:mod:`.options`. The demo scenario lives
in :mod:`fencing_coord.demo`, the detached development servers in
:mod:`fencing_coord.devservers`. :func:`main` maps the library's errors to the exit codes
of :mod:`.exits`, prints one line (``fencing-coord: error: ...``) instead of a traceback,
and returns the code.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from .. import __version__
from ..errors import FencingCoordError
from . import demo, locks, run, servers
from .exits import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOST,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PROG,
    exit_code_for,
    report,
)
from .signals import Terminated

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
    "console_main",
    "main",
]


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports arguments it does not know with its own usage.

    argparse leaves a subcommand's unknown arguments to the top-level parser, which then
    prints the top-level usage (``fencing-coord [-h] [--version] COMMAND ...``), not the
    usage of the subcommand that was misused.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fencing-coord`` (each subcommand sets ``func``; a misused
    subcommand prints its own usage)."""
    parser = _Parser(
        prog=PROG,
        description="Distributed locks with fencing tokens (etcd, ZooKeeper).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the library's log records (connection attempts, retries) on stderr")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for subcommand in (demo, run, locks, servers):
        subcommand.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Bad arguments print the usage of the (sub)command and return 2. Library errors print
    one line, ``fencing-coord: error: <message>``, and return the code of the table in
    :mod:`.exits`. Log records of the library and of the client libraries under it never
    reach stderr, unless ``--verbose``: the command's own lines say what went wrong.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    _route_log_records(verbose=args.verbose)
    try:
        return func(args, out or sys.stdout)
    except KeyboardInterrupt:
        report("interrupted")
        return EXIT_INTERRUPTED
    except Terminated as exc:
        report(str(exc))
        return 128 + exc.signum
    except FencingCoordError as exc:
        report(f"error: {exc}")
        return exit_code_for(exc)


def console_main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``fencing-coord`` program: end the process with :func:`main`'s exit code.

    When daemon threads are still running by then (the threads of a backend closed after
    a signal, a gRPC thread among them), the process ends once its output is flushed,
    without the interpreter's teardown. That teardown stops daemon threads wherever they
    are, then garbage-collects: a gRPC call object finalized then waits forever for a
    lock that a stopped gRPC thread held, and ``run`` hung at exit after SIGTERM or
    Ctrl-C (about one try in 150 on a loaded machine)."""
    code = main(argv)
    if any(thread.daemon and thread.is_alive() for thread in threading.enumerate()):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed stream
                stream.flush()
        os._exit(code)
    sys.exit(code)


def _route_log_records(*, verbose: bool) -> None:
    """With ``verbose``, every log record (debug and up) goes to stderr, named by its
    logger. Without, none does: a client library's retries ("Connection dropped" once per
    attempt) would bury the one line that says what failed. Python prints records of
    warning level and up on stderr when no handler is configured, so the root logger
    gets one that drops them (unless the embedding program configured logging)."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format=f"{PROG}: %(name)s: %(levelname)s: %(message)s")
    elif not logging.getLogger().handlers:
        logging.getLogger().addHandler(logging.NullHandler())
