"""``fencing-coord status [NAME ...]``: who holds each lock, with which token, and who
waits, as a table or JSON. With ``--store``, fenced resources instead (:mod:`.resources`)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from ..errors import InvalidArgument, NotSupported
from ..interface import LockState
from .exits import EXIT_OK
from .options import add_connection_options, open_backend
from .resources import add_store_options, cmd_resource_status
from .tables import table

__all__ = ["add_parser", "cmd_status"]


def add_parser(subparsers: Any) -> None:
    """Add ``status`` to ``subparsers`` (what ``add_subparsers`` returned)."""
    status = subparsers.add_parser(
        "status", help="holders, tokens and waiters of locks; highest token and decisions of a resource",
        description="Show who holds each lock, with which fencing token, and who waits, in order. With --store: "
                    "each --resource's highest admitted token and its latest gate decisions, read from the store "
                    "(read-only; decisions are shown where the store keeps an audit table).",
    )
    add_connection_options(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("names", nargs="*", metavar="NAME",
                        help="locks to show (default: every lock held or waited for, if the backend can list them)")
    add_store_options(status)
    status.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    """Print holder, token and waiters of each NAME (or of every lock the backend can
    list); with ``--store``, the resources of a store (:func:`.resources.cmd_resource_status`)."""
    if args.store is not None:
        return cmd_resource_status(args, out)
    if args.resource or args.limit is not None:
        raise InvalidArgument("--resource and --limit show a fenced resource: they need --store URL")
    with open_backend(args, identity="fencing-coord-status") as backend:
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
    out.write(table(rows))
    return EXIT_OK


def _state_dict(state: LockState) -> dict[str, Any]:
    return {"name": state.name, "holder": state.holder, "token": state.token, "waiters": list(state.waiters)}

