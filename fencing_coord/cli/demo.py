"""``fencing-coord demo``: the pause scenario, unfenced vs fenced (the scenario itself is
:mod:`fencing_coord.demo`)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any, TextIO

from .exits import EXIT_FAILED, EXIT_OK
from .options import paragraph, positive_seconds

__all__ = ["add_parser", "cmd_demo"]


def add_parser(subparsers: Any) -> None:
    """Add ``demo`` to ``subparsers`` (what ``add_subparsers`` returned)."""
    demo = subparsers.add_parser(
        "demo", help="the pause scenario: a paused holder's stale write, unfenced vs fenced",
        description=paragraph(
            "A lock holder is paused (SIGSTOP) past its lease; a successor acquires the lock and "
            "writes; the holder wakes and writes with its old token. Run once through an unfenced "
            "resource (the stale write wins: corrupted) and once through a fenced one (refused), on "
            "each backend. Without --url, local etcd and ZooKeeper servers are started from the "
            "binaries on PATH and stopped at the end."
        ),
    )
    demo.add_argument("--url", action="append", metavar="URL",
                      help="run against this existing cluster instead (repeatable: one per backend)")
    demo.add_argument("--ttl", type=positive_seconds, default=2.0, metavar="S",
                      help="lease/session TTL of the demo's processes (default: 2; servers may raise it)")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    """The pause scenario on every backend, unfenced then fenced; exit 0 when every fenced
    run refused the stale write and every unfenced run was corrupted by it."""
    from ..demo import local_servers, run_demo

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
