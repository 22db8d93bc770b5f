"""A lock holder in its own process, driven by the ZooKeeper fault tests.

    python holder.py URL --store sqlite:/path/state.db|zookeeper [--ttl 2] [--namespace NS] [--worker NAME]

Commands, one per line on stdin; every answer is one JSON object per line on stdout:

``acquire NAME``          -> {"event": "acquired", "token": t, "session": id}
``write NAME KEY VALUE``  -> {"event": "write", "accepted": b, "reason": r, "lost": b, "lost_reason": r}
``wait-lost``             -> {"event": "lost", "reason": r, "calls": n}  (once on_lost ran)
``exit``                  -> the process ends

With ``--worker NAME`` the process instead waits for ``go`` and then loops until
``stop``: take the lock NAME, do a fenced read-modify-write of the counter
``NAME/counter``, record the holder's token in ``NAME/entry-<n>`` for increment n,
release; it reports {"event": "progress", "token": t, "n": n} per round, "refused" when
the gate refused a round (its grant was lost meanwhile), "unavailable" when ZooKeeper
could not be reached in time (electing a leader), and "done" at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend, ZooKeeperStore
from fencing_coord.gate import FencedResource
from fencing_coord.stores import SQLiteStore, Store


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def open_store(spec: str, backend: ZooKeeperBackend) -> Store:
    if spec == "zookeeper":
        return ZooKeeperStore(backend)
    kind, _, path = spec.partition(":")
    assert kind == "sqlite", spec
    return SQLiteStore(path)


def serve(backend: ZooKeeperBackend, resource: FencedResource) -> None:
    grants: dict[str, fc.Grant] = {}
    lost_calls: list[str] = []
    lost = threading.Event()

    def on_lost(grant: fc.Grant) -> None:
        lost_calls.append(grant.lost_reason or "")
        lost.set()

    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command = words[0]
        if command == "acquire":
            grant = backend.acquire(words[1], timeout=60)
            grant.on_lost(on_lost)
            grants[words[1]] = grant
            say(event="acquired", token=grant.token, session=backend.session_id)
        elif command == "write":
            name, key, value = words[1:4]
            grant = grants[name]
            result = resource.write(name, key, value.encode(), token=grant.token)
            say(event="write", accepted=result.accepted, reason=result.reason, lost=grant.lost,
                lost_reason=grant.lost_reason)
        elif command == "wait-lost":
            lost.wait(60)
            say(event="lost", reason=lost_calls[0] if lost_calls else None, calls=len(lost_calls))
        elif command == "exit":
            return


def work(backend: ZooKeeperBackend, resource: FencedResource, name: str) -> None:
    stop = threading.Event()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    sys.stdin.readline()  # "go": every worker starts at once
    threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.is_set():
        try:
            with backend.lock(name, timeout=60) as grant:
                raw = resource.read(name, "counter", token=grant.token)
                n = int(raw or b"0") + 1
                entry = resource.write(name, f"entry-{n}", str(grant.token).encode(), token=grant.token)
                counter = resource.write(name, "counter", str(n).encode(), token=grant.token)
                if entry.accepted and counter.accepted:
                    say(event="progress", token=grant.token, n=n)
                else:
                    say(event="refused", token=grant.token, n=n, reason=entry.reason or counter.reason)
        except fc.StaleTokenError as exc:  # the fenced read was refused
            say(event="refused", reason=str(exc))
        except fc.BackendUnavailable as exc:  # the ensemble is electing a leader: try again
            say(event="unavailable", reason=str(exc))
    say(event="done")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--store", required=True)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--namespace", default="faults")
    parser.add_argument("--worker")
    args = parser.parse_args()
    with fc.connect(args.url, ttl=args.ttl, namespace=args.namespace) as backend:
        assert isinstance(backend, ZooKeeperBackend)
        store = open_store(args.store, backend)
        resource = FencedResource(store)
        say(event="ready", identity=backend.identity, session=backend.session_id)
        if args.worker:
            work(backend, resource, args.worker)
        else:
            serve(backend, resource)


if __name__ == "__main__":
    main()
