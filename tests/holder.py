"""A lock holder in its own process, driven by the etcd and ZooKeeper fault tests.

    python holder.py URL --store sqlite:/path/state.db|etcd|zookeeper|redis [--ttl 2] [--namespace NS] [--worker NAME]

``--store`` names the store behind the holder's FencedResource: a SQLite file, or the
coordination service of the backend itself (``etcd``, ``zookeeper``, ``redis``).

Commands, one per line on stdin; every answer is one JSON object per line on stdout:

``acquire NAME``          -> {"event": "acquired", "token": t, "session": id}
``write NAME KEY VALUE``  -> {"event": "write", "accepted": b, "reason": r, "lost": b, "lost_reason": r}
``wait-lost``             -> {"event": "lost", "reason": r, "calls": n}  (once on_lost ran)
``release NAME``          -> {"event": "released", "released": b, "error": null}  (what release() returned;
                             released null and the exception's class name when it raised)
``exit``                  -> the process ends

``session`` (also in the first report, ``ready``) is the backend's session id where it
has one (ZooKeeper), else null.

With ``--worker NAME`` the process instead waits for ``go``, then loops until ``stop``
arrives on stdin: take the lock NAME, do a fenced read-modify-write of the counter
``NAME/counter`` and record the holder's token in ``NAME/entry-<n>`` for each increment
n, release; it reports {"event": "progress", "token": t, "n": n} per round. A round
whose fenced operation is refused (its grant was lost meanwhile) reports
{"event": "refused", ...}, one that cannot reach the service in time (it is electing a
leader) {"event": "unavailable", ...}; both go on with the next round. It reports
{"event": "done"} at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

import fencing_coord as fc
from fencing_coord.gate import FencedResource, WriteResult
from fencing_coord.stores import SQLiteStore, Store


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def open_store(spec: str, backend: fc.LockBackend) -> Store:
    # The services' own stores are imported only when named: etcd3 or kazoo, not both.
    if spec == "etcd":
        from fencing_coord.backends.etcd import EtcdBackend, EtcdStore

        assert isinstance(backend, EtcdBackend)
        etcd_store: Store = EtcdStore(backend)
        return etcd_store
    if spec == "zookeeper":
        from fencing_coord.backends.zookeeper import ZooKeeperBackend, ZooKeeperStore

        assert isinstance(backend, ZooKeeperBackend)
        zookeeper_store: Store = ZooKeeperStore(backend)
        return zookeeper_store
    if spec == "redis":
        from fencing_coord.backends.redis import RedisBackend, RedisStore

        assert isinstance(backend, RedisBackend)
        store: Store = RedisStore(backend)
        return store
    kind, _, path = spec.partition(":")
    assert kind == "sqlite", spec
    return SQLiteStore(path)


def session(backend: fc.LockBackend) -> int | None:
    """The backend's session id, for backends that have sessions (ZooKeeper)."""
    value: int | None = getattr(backend, "session_id", None)
    return value


def serve(backend: fc.LockBackend, resource: FencedResource) -> None:
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
            say(event="acquired", token=grant.token, session=session(backend))
        elif command == "write":
            name, key, value = words[1:4]
            grant = grants[name]
            report_write(grant, resource.write(name, key, value.encode(), token=grant.token))
        elif command == "release":
            try:
                say(event="released", released=backend.release(grants.pop(words[1])), error=None)
            except fc.FencingCoordError as exc:  # e.g. BackendUnavailable: the outcome is unknown
                say(event="released", released=None, error=type(exc).__name__)
        elif command == "wait-lost":
            lost.wait(60)
            say(event="lost", reason=lost_calls[0] if lost_calls else None, calls=len(lost_calls))
        elif command == "exit":
            return


def report_round(token: int, n: int, entry: WriteResult, counter: WriteResult) -> None:
    """Report one worker round: both writes accepted (progress), or refused."""
    if entry.accepted and counter.accepted:
        say(event="progress", token=token, n=n)
    else:
        say(event="refused", token=token, n=n, reason=entry.reason or counter.reason)


def report_write(grant: fc.Grant, result: WriteResult) -> None:
    say(event="write", accepted=result.accepted, reason=result.reason, lost=grant.lost, lost_reason=grant.lost_reason)


def work(backend: fc.LockBackend, resource: FencedResource, name: str) -> None:
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
                report_round(grant.token, n, entry, counter)
        except fc.StaleTokenError as exc:  # the fenced read was refused
            say(event="refused", reason=str(exc))
        except fc.BackendUnavailable as exc:  # the service is electing a leader: try again
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
        store = open_store(args.store, backend)
        resource = FencedResource(store)
        say(event="ready", identity=backend.identity, session=session(backend))
        if args.worker:
            work(backend, resource, args.worker)
        else:
            serve(backend, resource)


if __name__ == "__main__":
    main()
