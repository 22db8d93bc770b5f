"""``fencing-coord status --store URL --resource NAME``: a fenced resource's highest
token and its latest gate decisions, read from its store (:mod:`fencing_coord.stores.readonly`:
read-only, nothing created), as text or JSON.

A store without an audit table (one not opened with ``audit=True``) shows the highest
token and says that decisions are not recorded there; JSON has ``"decisions": null``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from ..errors import InvalidArgument
from ..stores.readonly import MAX_LIMIT, STORE_URL_HELP, ResourceStatus, open_reader
from ..validation import check_name
from .exits import EXIT_OK
from .tables import table

__all__ = ["DEFAULT_LIMIT", "add_store_options", "cmd_resource_status", "limit"]

#: Decisions shown per resource when --limit is not given.
DEFAULT_LIMIT = 20


def limit(text: str) -> int:
    """An argparse type: a whole number of decisions, 1..MAX_LIMIT."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r}: must be between 1 and {MAX_LIMIT}")
    return value


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--store``, ``--resource`` and ``--limit`` to ``status``'s parser."""
    group = parser.add_argument_group(
        "fenced resources", "show resources of a store instead of locks (no --url, no NAME)")
    group.add_argument("--store", metavar="URL", help=f"the store to read: {STORE_URL_HELP}")
    group.add_argument("--resource", action="append", metavar="NAME",
                       help="a resource to show (repeatable; needs --store)")
    group.add_argument("--limit", type=limit, metavar="N",
                       help=f"latest decisions shown per resource (default: {DEFAULT_LIMIT}, at most {MAX_LIMIT})")


def cmd_resource_status(args: argparse.Namespace, out: TextIO) -> int:
    """Print each ``--resource``'s highest token and latest decisions from ``--store``."""
    if args.url is not None or args.names or args.namespace is not None:
        raise InvalidArgument("--store shows fenced resources; --url, --namespace and lock NAMEs show locks: "
                              "give one or the other")
    if not args.resource:
        raise InvalidArgument("--store needs --resource NAME (repeatable)")
    names = [check_name(name, "resource name") for name in args.resource]  # before connecting
    count = args.limit or DEFAULT_LIMIT
    with open_reader(args.store) as reader:
        statuses = reader.status(names, count)
    if args.json:
        json.dump({"store": reader.what, "audit_table": reader.audited,
                   "resources": [_status_dict(s) for s in statuses]}, out, indent=2)
        out.write("\n")
        return EXIT_OK
    out.write(f"{reader.what}\n")
    for status in statuses:
        highest = "none admitted yet" if status.highest is None else str(status.highest)
        out.write(f"\nresource {status.resource}: highest token {highest}\n")
        if status.decisions is None:
            out.write("  decisions are not recorded in this store (no audit table: open the store with audit=True)\n")
        elif not status.decisions:
            out.write("  no decisions recorded\n")
        else:
            out.write(f"  latest decisions, newest first (at most {count}):\n")
            rows = [("AT", "KEY", "TOKEN", "HIGHEST", "DECISION", "MODE", "HOLDER")]
            rows += [(d.at, d.key, _text(d.token), _text(d.highest), d.decision, d.mode, d.holder or "-")
                     for d in status.decisions]
            out.write(table(rows, indent="  "))
    return EXIT_OK


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)


def _status_dict(status: ResourceStatus) -> dict[str, Any]:
    decisions = None if status.decisions is None else [
        {"at": d.at, "key": d.key, "token": d.token, "highest": d.highest, "decision": d.decision,
         "mode": d.mode, "holder": d.holder} for d in status.decisions]
    return {"resource": status.resource, "highest_token": status.highest, "decisions": decisions}
