"""The worker process of the fault campaign (:mod:`fencing_coord.testing.chaos`), and its
two helper commands.

    python -m fencing_coord.testing.chaos_worker run URL --worker ID --history FILE --status FILE
        --store sqlite=PATH --store postgres=DSN --store service [--counters 2] [--unfenced] ...
    python -m fencing_coord.testing.chaos_worker dump URL --store ... --resources JSON
    python -m fencing_coord.testing.chaos_worker expire-session HOSTS SESSION_ID PASSWORD_HEX

``run`` loops until SIGTERM: it picks a store and a counter at random, takes the lock
guarding that counter, does a read-modify-write of it through a FencedResource (a fenced
read, then ``entry-<n>`` = "<op> <token>", then ``counter`` = n, all with the grant's
token; with ``--unfenced`` through an UnfencedResource instead) and releases the lock.
Every step is appended to the history file as one JSON line *before* it is sent
(``invoke``), and its outcome after (``ok``, ``refused``, ``unknown`` when the service
could not say, ``fail`` for an error that leaves the state unchanged). Lines are written
with one ``write(2)`` each, so a SIGKILLed worker loses no line it wrote. Times are
``time.monotonic()``: the same clock in every process of one machine.

The status file (rewritten atomically on every change) tells the nemesis whether the
worker holds a lock and its lease (etcd) or session id and password (ZooKeeper).

``dump`` prints the final state of the named resources as JSON; ``expire-session`` ends
a ZooKeeper session from a twin connection, as ZooKeeper's FAQ describes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import fencing_coord as fc
from fencing_coord.errors import BackendUnavailable, FencingCoordError, LockTimeout, StaleTokenError
from fencing_coord.gate import FencedResource, UnfencedResource, WriteResult
from fencing_coord.stores import PostgresStore, SQLiteStore, Store

__all__ = ["History", "lock_name", "main", "open_store", "resource_name"]

#: Seconds one acquire may wait before the worker tries another counter.
ACQUIRE_TIMEOUT = 5.0
#: Seconds one request may wait for the service (the backend's ``timeout`` option).
REQUEST_TIMEOUT = 2.0


def resource_name(prefix: str, counter: int) -> str:
    return f"{prefix}c{counter}"


def lock_name(prefix: str, store: str, counter: int) -> str:
    """The lock guarding counter ``counter`` of store ``store``."""
    return f"{prefix}{store}-c{counter}"


class History:
    """Append-only JSON-lines history; each line is one ``write(2)``."""

    def __init__(self, path: Path, worker: str) -> None:
        self.worker = worker
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(self, ev: str, **fields: Any) -> None:
        record = {"ev": ev, "w": self.worker, "t": time.monotonic(), **fields}
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


def open_store(spec: str, backend: fc.LockBackend, url: str) -> Store:
    """``sqlite=PATH``, ``postgres=DSN``, or ``service``: the own store of the service
    ``url`` names (only that backend's client library is imported)."""
    kind, _, where = spec.partition("=")
    if kind == "sqlite":
        return SQLiteStore(where)
    if kind == "postgres":
        return PostgresStore(where)
    if kind == "service" and url.startswith(("etcd://", "etcds://")):
        from fencing_coord.backends.etcd import EtcdBackend, EtcdStore

        if isinstance(backend, EtcdBackend):
            etcd_store: Store = EtcdStore(backend)
            return etcd_store
    elif kind == "service":
        from fencing_coord.backends.zookeeper import ZooKeeperBackend, ZooKeeperStore

        if isinstance(backend, ZooKeeperBackend):
            zookeeper_store: Store = ZooKeeperStore(backend)
            return zookeeper_store
    raise fc.ConfigurationError(f"unknown store spec {spec!r} for {url}")


def store_key(spec: str) -> str:
    return spec.partition("=")[0]


class Worker:
    """One worker's loop (see the module docstring)."""

    def __init__(self, backend: fc.LockBackend, stores: dict[str, Store], args: argparse.Namespace) -> None:
        self.backend = backend
        self.stores = stores
        self.resources = {
            key: (UnfencedResource(store) if args.unfenced else FencedResource(store)) for key, store in stores.items()
        }
        self.args = args
        self.history = History(Path(args.history), args.worker)
        self.random = random.Random(args.seed)
        self.stopping = False
        self.seq = 0
        self._status: dict[str, Any] = {}

    def run(self) -> None:
        while not self.stopping:
            store = self.random.choice(sorted(self.stores))
            counter = self.random.randrange(self.args.counters)
            self.seq += 1
            self.operation(f"{self.args.worker}.{self.seq}", store, counter)
        self.history.log("stopped")

    def operation(self, op: str, store: str, counter: int) -> None:
        log = self.history.log
        lock = lock_name(self.args.prefix, store, counter)
        resource = resource_name(self.args.prefix, counter)
        log("acquire", op=op, lock=lock)
        try:
            grant = self.backend.acquire(lock, timeout=ACQUIRE_TIMEOUT)
        except (LockTimeout, BackendUnavailable) as exc:
            log("acquire-failed", op=op, lock=lock, error=type(exc).__name__)
            return
        log("acquired", op=op, lock=lock, token=grant.token)
        self.set_status(holding=lock, stage="acquired")
        try:
            self.read_modify_write(op, store, resource, grant.token, lock)
        finally:
            self.set_status(holding=None, stage=None)
            log("release", op=op, lock=lock, token=grant.token)
            try:
                released = self.backend.release(grant)
            except BackendUnavailable as exc:
                log("release-unknown", op=op, lock=lock, token=grant.token, error=type(exc).__name__)
            else:
                log("released", op=op, lock=lock, token=grant.token, released=released)

    def read_modify_write(self, op: str, store: str, resource: str, token: int, lock: str) -> None:
        gate = self.resources[store]
        where = {"op": op, "store": store, "resource": resource, "token": token}
        read = self.call(where, "read", "counter", None, lambda: gate.read(resource, "counter", token=token))
        if not isinstance(read, bytes):
            return
        n = int(read or b"0") + 1
        self.set_status(holding=lock, stage="computing")
        time.sleep(self.args.think)  # the "computation": a paused holder is often caught here
        entry = f"{op} {token}".encode()
        if self.call(where, "write", f"entry-{n}", n,
                     lambda: gate.write(resource, f"entry-{n}", entry, token=token)) is None:
            return
        self.call(where, "write", "counter", n, lambda: gate.write(resource, "counter", str(n).encode(), token=token))

    def call(self, where: dict[str, Any], kind: str, key: str, n: int | None,
             send: Callable[[], bytes | WriteResult | None]) -> bytes | WriteResult | None:
        """Log the intent, send, log the outcome. Returns the read's value (b"" for a
        missing key) or the accepted write's result; None when refused or unknown."""
        log = self.history.log
        log("invoke", call=kind, key=key, n=n, **where)
        try:
            result = send()
        except StaleTokenError as exc:
            log("refused", call=kind, key=key, n=n, reason=str(exc), **where)
            return None
        except BackendUnavailable as exc:
            log("unknown", call=kind, key=key, n=n, error=f"{type(exc).__name__}: {exc}", **where)
            return None
        if not isinstance(result, WriteResult):
            log("ok", call=kind, key=key, value=None if result is None else result.decode(), **where)
            return result or b""
        if result.accepted:
            log("ok", call=kind, key=key, n=n, **where)
            return result
        log("refused", call=kind, key=key, n=n, reason=result.reason, **where)
        return None

    def set_status(self, holding: str | None, stage: str | None) -> None:
        """``stage``: ``acquired``, or ``computing`` between the read and the writes."""
        status: dict[str, Any] = {"pid": os.getpid(), "holding": holding, "stage": stage}
        lease = getattr(self.backend, "lease_id", None)
        if lease is not None:
            status["lease"] = lease
        if hasattr(self.backend, "kazoo_client"):
            client_id = self.backend.kazoo_client.client_id
            if client_id is not None:
                status["session"] = [client_id[0], client_id[1].hex()]
        if status == self._status:
            return
        self._status = status
        path = Path(self.args.status)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(status))
        tmp.replace(path)


def connect_until_stopped(args: argparse.Namespace) -> fc.LockBackend:
    """A backend, retrying while the service is unreachable (the nemesis may be cutting
    this worker off right now); SIGTERM during the wait exits."""
    while True:
        try:
            return fc.connect(args.url, ttl=args.ttl, namespace=args.namespace, timeout=REQUEST_TIMEOUT)
        except BackendUnavailable as exc:
            print(f"chaos_worker: not connected yet ({exc}); trying again", file=sys.stderr, flush=True)
            time.sleep(0.5)


def command_run(args: argparse.Namespace) -> int:
    backend = connect_until_stopped(args)
    stores = {store_key(spec): open_store(spec, backend, args.url) for spec in args.store}
    worker = Worker(backend, stores, args)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    worker.history.log("started", pid=os.getpid())
    try:
        worker.run()
    except BaseException as exc:
        worker.history.log("crash", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        raise
    finally:
        for store in stores.values():
            store.close()
        backend.close()
    return 0


def command_dump(args: argparse.Namespace) -> int:
    """Print {store: {resource: {"counter": value, "entries": {n: value}}}}."""
    wanted: dict[str, dict[str, int]] = json.loads(args.resources)
    out: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while True:
        try:
            with fc.connect(args.url, namespace=args.namespace, timeout=10) as backend:
                for spec in args.store:
                    key = store_key(spec)
                    with open_store(spec, backend, args.url) as store:
                        out[key] = {}
                        for resource, top in wanted.get(key, {}).items():
                            counter = store.plain_read(resource, "counter")
                            entries = {}
                            for n in range(1, top + 1):
                                value = store.plain_read(resource, f"entry-{n}")
                                if value is not None:
                                    entries[str(n)] = value.decode()
                            out[key][resource] = {"counter": None if counter is None else counter.decode(),
                                                  "entries": entries, "highest": store.highest_token(resource)}
            break
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    print(json.dumps(out))
    return 0


def command_expire(args: argparse.Namespace) -> int:
    from kazoo.client import KazooClient

    twin = KazooClient(hosts=args.hosts, client_id=(args.session_id, bytes.fromhex(args.password)))
    try:
        twin.start(timeout=5)
    except Exception as exc:  # kazoo's timeout is its own class: report, do not crash
        print(f"cannot attach to session {args.session_id:#x}: {exc}", file=sys.stderr)
        twin.close()
        return 1
    twin.stop()  # closes the session on the server: its ephemeral nodes go at once
    twin.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fencing_coord.testing.chaos_worker")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("url")
    run.add_argument("--worker", required=True)
    run.add_argument("--history", required=True)
    run.add_argument("--status", required=True)
    run.add_argument("--store", action="append", required=True)
    run.add_argument("--counters", type=int, default=2)
    run.add_argument("--prefix", default="")
    run.add_argument("--namespace", default="chaos")
    run.add_argument("--ttl", type=float, default=2.0)
    run.add_argument("--think", type=float, default=0.02)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--unfenced", action="store_true")
    dump = sub.add_parser("dump")
    dump.add_argument("url")
    dump.add_argument("--store", action="append", required=True)
    dump.add_argument("--namespace", default="chaos")
    dump.add_argument("--resources", required=True, help='JSON {store: {resource: highest n to read}}')
    expire = sub.add_parser("expire-session")
    expire.add_argument("hosts")
    expire.add_argument("session_id", type=int)
    expire.add_argument("password")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "dump":
            return command_dump(args)
        return command_expire(args)
    except FencingCoordError as exc:
        print(f"chaos_worker {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
