"""``fencing-coord``: the command line.

    fencing-coord demo [--url URL ...]                 the pause scenario, unfenced vs fenced
    fencing-coord run --url URL --lock NAME -- CMD...  run CMD while holding a lock
    fencing-coord status --url URL [NAME ...]          holders, tokens and waiters
    fencing-coord servers up|down|status               local development servers

One module per subcommand, each adding its own parser and its ``cmd_*`` function:
:mod:`.demo`, :mod:`.run` (with :mod:`.signals`), :mod:`.locks` (``status``),
:mod:`.servers`; the options they share are in :mod:`.options`. The demo scenario lives
in :mod:`fencing_coord.demo`, the detached development servers in
:mod:`fencing_coord.devservers`. :func:`main` maps the library's errors to the exit codes
of :mod:`.exits`, prints one line (``fencing-coord: error: ...``) instead of a traceback,
and returns the code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from .. import __version__
from ..errors import FencingCoordError
from . import demo, locks, run, servers
from .exits import (
    EXIT_CODES_HELP,
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
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fencing-coord`` (each subcommand sets ``func``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Distributed locks with fencing tokens (etcd, ZooKeeper).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for subcommand in (demo, run, locks, servers):
        subcommand.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Bad arguments print argparse's usage message and return 2. Library errors print one
    line, ``fencing-coord: error: <message>``, and return the code of the table in
    :mod:`.exits`.
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
        report("interrupted")
        return EXIT_INTERRUPTED
    except Terminated as exc:
        report(str(exc))
        return 128 + exc.signum
    except FencingCoordError as exc:
        report(f"error: {exc}")
        return exit_code_for(exc)
