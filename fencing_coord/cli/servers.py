"""``fencing-coord servers up|down|status``: local development servers that outlive the
command (the servers themselves are :mod:`fencing_coord.devservers`)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from ..config import ENV_VAR
from ..devservers import DevServers
from .exits import EXIT_OK, EXIT_UNAVAILABLE, PROG, report
from .options import paragraph

__all__ = ["add_parser", "cmd_servers_down", "cmd_servers_status", "cmd_servers_up"]


def add_parser(subparsers: Any) -> None:
    """Add ``servers`` and its actions to ``subparsers`` (what ``add_subparsers`` returned)."""
    servers = subparsers.add_parser(
        "servers", help="local etcd / ZooKeeper servers for development",
        description=paragraph(
            "Start local servers from the binaries on PATH (etcd; ZooKeeper with java), detached "
            "from this command, and print their URLs. State, data and logs live under "
            "--state-dir (default: $FENCING_COORD_STATE_DIR, else $XDG_STATE_HOME/fencing-coord, "
            "else ~/.local/state/fencing-coord). The data outlives 'down': the next 'up' starts "
            "each server on its data and on the same ports, so URLs stay valid and fencing tokens "
            "go on growing. 'down --purge' deletes it."
        ),
    )
    actions = servers.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up", help="start servers (next to those already running) and print their URLs",
        description=paragraph(
            "Start the servers asked for that do not run yet, next to those that do (e.g. "
            "ZooKeeper next to a running etcd), on the data and ports an earlier 'up' left, if any."
        ),
    )
    up.add_argument("--etcd", choices=["single", "cluster", "none"], default="single",
                    help="one etcd node, a 3-member cluster, or none (default: single)")
    up.add_argument("--zookeeper", choices=["standalone", "ensemble", "none"], default="standalone",
                    help="one ZooKeeper server, a 3-node ensemble, or none (default: standalone)")
    up.set_defaults(func=cmd_servers_up)
    down = actions.add_parser("down", help="stop the servers (their data stays for the next 'up')")
    down.add_argument("--purge", action="store_true",
                      help="also delete the servers' data and logs (the next 'up' starts afresh: tokens restart)")
    down.set_defaults(func=cmd_servers_down)
    st = actions.add_parser("status", help="show the servers, their URLs and whether they run")
    st.set_defaults(func=cmd_servers_status)
    for action in (up, down, st):
        action.add_argument("--state-dir", metavar="DIR", help="where the servers' state, data and logs live")
    for action in (up, st):
        action.add_argument("--json", action="store_true", help="print JSON")


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
    """Stop the servers ``servers up`` started; with ``--purge`` delete their data.
    What happened to the data is said on stderr."""
    servers = DevServers(args.state_dir)
    kept = servers.kept_data()
    stopped = servers.down(purge=args.purge)
    out.write(("stopped: " + ", ".join(stopped) if stopped else "no servers were running") + "\n")
    if kept and args.purge:
        report(f"deleted the data and logs of {', '.join(kept)} in {servers.dir}")
    elif kept:
        report(f"the data of {', '.join(kept)} stays in {servers.dir} for the next 'servers up' "
               f"(delete it with: {PROG} servers down --purge{_state_dir_arg(args)})")
    return EXIT_OK


def cmd_servers_status(args: argparse.Namespace, out: TextIO) -> int:
    """Show what ``servers up`` started and whether it still runs; exit 69 if a server
    that was started no longer answers."""
    servers = DevServers(args.state_dir)
    state = servers.status()
    if args.json:
        json.dump(state, out, indent=2)
        out.write("\n")
    elif not state.get("services"):
        out.write(f"no servers running (start them with: {PROG} servers up)\n")
        if kept := servers.kept_data():
            out.write(f"data of {', '.join(kept)} kept in {servers.dir} (the next 'up' starts on it)\n")
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
