"""Contention scaling: 4, 16 and 32 processes on one lock, on etcd and ZooKeeper.

    python bench/contention.py [--clients 4,16,32] [--seconds 3] [--rounds 2] [--only etcd,zookeeper]

Per service and number of processes, three kinds run once per round, the order rotating:

* the floor: a queue lock with the fewest requests, written against the client library.
  etcd: one transaction puts our key and reads the newest two (the second is our
  predecessor); a watch on the predecessor from the revision after ours; on its DELETE,
  one range for a key older than ours (none: granted); release is one delete.
  ZooKeeper: ephemeral-sequential create, list the children, ``exists`` watch on the
  predecessor, list again on its event; release is one delete;
* the peer: python3-etcd3's ``Lock``, kazoo's ``Lock``;
* ours.

Printed per kind: grants/s; handoffs/s, the grants that went to another process than
the one that held the lock before; Jain's fairness index of the grants per process; the
client CPU time per grant (all processes together); and the server's work per grant.
For etcd that is the Txn, Range and DeleteRange requests and the Watch messages sent to
clients (its /metrics, over the whole run). For ZooKeeper it is the packets it received
(``mntr``).

Ratios are the medians of the per-round ratios. Issue 13's measure is contended
*handoffs* per second, so the targets apply to handoffs/s: ours >= 0.95x floor and
>= 1.1x the peer at every N, and Jain >= 0.99. A FIFO lock hands off on every grant.
python3-etcd3's lock is not FIFO: a process that releases often takes the lock straight
back, with no other process served. Those re-takes count as grants but not as
handoffs. The grants/s ratios are printed beside the targets, for the record.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import statistics
import sys
import threading
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import _common  # bench/_common.py: this script's directory is on sys.path
import grpc
from _common import Give, OpenLock, Take
from etcd import etcd3_contender, quiet_etcd3_watcher  # bench/etcd.py
from etcd3 import etcdrpc
from zookeeper import kazoo_client, kazoo_contender  # bench/zookeeper.py

from fencing_coord.config import parse_url
from fencing_coord.servers.etcd import EtcdServer
from fencing_coord.servers.zookeeper import ZooKeeperServer, four_letter_word

_METRIC = re.compile(r'grpc_server_(started|msg_sent)_total\{grpc_method="(\w+)",grpc_service="etcdserverpb\.\w+"'
                     r'[^}]*\} (\d+)')


@contextlib.contextmanager
def etcd_floor(url: str, name: str) -> Iterator[tuple[Take, Give]]:
    host, port = parse_url(url).host_list(2379)[0]
    channel = grpc.insecure_channel(f"{host}:{port}")
    kv, watch = etcdrpc.KVStub(channel), etcdrpc.WatchStub(channel)
    lease = etcdrpc.LeaseStub(channel).LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=120)).ID
    prefix = f"/bench/floor/{name}/".encode()
    end = prefix[:-1] + b"0"
    by_create = {"sort_target": etcdrpc.RangeRequest.CREATE, "sort_order": etcdrpc.RangeRequest.DESCEND}
    newest_two = etcdrpc.RangeRequest(key=prefix, range_end=end, limit=2, **by_create)

    def deleted(key: bytes, after: int) -> None:
        done = threading.Event()

        def requests() -> Iterator[object]:
            yield etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
                key=key, start_revision=after + 1, filters=[etcdrpc.WatchCreateRequest.NOPUT]))
            done.wait()

        call = watch.Watch(requests(), timeout=60)
        for answer in call:
            if answer.events:
                break
        done.set()
        call.cancel()

    def take() -> object:
        key = prefix + uuid.uuid4().hex.encode()
        response = kv.Txn(etcdrpc.TxnRequest(success=[
            etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=b"x", lease=lease)),
            etcdrpc.RequestOp(request_range=newest_two)]), timeout=60)
        mine = seen = response.header.revision
        newest = response.responses[1].response_range.kvs
        predecessor = newest[1].key if len(newest) > 1 else None
        while predecessor is not None:
            deleted(predecessor, seen)
            before = kv.Range(etcdrpc.RangeRequest(key=prefix, range_end=end, limit=1, max_create_revision=mine - 1,
                                                   **by_create), timeout=60)
            seen = before.header.revision
            predecessor = before.kvs[0].key if before.kvs else None
        return key

    def give(key: object) -> None:
        assert isinstance(key, bytes)
        kv.DeleteRange(etcdrpc.DeleteRangeRequest(key=key), timeout=60)

    try:
        yield take, give
    finally:
        channel.close()


@contextlib.contextmanager
def zookeeper_floor(url: str, name: str) -> Iterator[tuple[Take, Give]]:
    client = kazoo_client(url)
    parent = f"/bench/floor-{name}"
    client.ensure_path(parent)

    def take() -> object:
        node = client.create(parent + "/lock-", b"x", ephemeral=True, sequence=True)
        mine = node.rsplit("/", 1)[1]
        while True:
            before = [child for child in client.get_children(parent) if child < mine]
            if not before:
                return node
            gone = threading.Event()
            if client.exists(f"{parent}/{max(before)}", watch=functools.partial(_set, gone)) is not None:
                gone.wait(60)

    def give(node: object) -> None:
        client.delete(str(node))

    try:
        yield take, give
    finally:
        client.stop()
        client.close()


def _set(event: threading.Event, _watched: object) -> None:
    event.set()


@contextlib.contextmanager
def our_lock_quiet(url: str, name: str) -> Iterator[tuple[Take, Give]]:
    quiet_etcd3_watcher()
    with _common.our_lock(url, name) as lock:
        yield lock


def etcd_work(metrics_url: str) -> Callable[[], Counter[str]]:
    def read() -> Counter[str]:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
        found: Counter[str] = Counter()
        for kind, method, count in _METRIC.findall(text):
            if kind == "started" and method in ("Txn", "Range", "DeleteRange"):
                found[method] += int(count)
            elif kind == "msg_sent" and method == "Watch":
                found["watch msgs"] += int(count)
        return found

    return read


def zookeeper_work(port: int) -> Callable[[], Counter[str]]:
    def read() -> Counter[str]:
        answer = four_letter_word(port, "mntr") or b""
        found = re.search(rb"zk_packets_received\s+(\d+)", answer)
        return Counter({"packets": int(found.group(1)) if found else 0})

    return read


class Run:
    """One contended run and the server work it caused."""

    def __init__(self, result: _common.Contended, work: Counter[str], seconds: float) -> None:
        self.result = result
        grants = max(1.0, result.grants * seconds)
        self.per_grant = {what: count / grants for what, count in work.items()}


def one_run(lock: OpenLock, url: str, clients: int, seconds: float, work: Callable[[], Counter[str]]) -> Run:
    before = work()
    result = _common.contended(lock, url, clients, seconds, quiet=quiet_etcd3_watcher)
    after = work()
    return Run(result, after - before, seconds)


def service(name: str, url: str, kinds: dict[str, OpenLock], peer: str, work: Callable[[], Counter[str]],
            clients: list[int], seconds: float, rounds: int) -> int:
    missed = 0
    for n in clients:
        runs = _common.interleaved(
            {kind: functools.partial(one_run, lock, url, n, seconds, work) for kind, lock in kinds.items()},
            rounds)
        print(f"\n{name}, {n} processes on one lock, {rounds} rounds of {seconds:g} s (medians)")
        for kind, done in runs.items():
            rate = statistics.median(r.result.grants for r in done)
            handoffs = statistics.median(r.result.handoffs for r in done)
            jain = statistics.median(r.result.fairness for r in done)
            per_grant = "  ".join(f"{what} {statistics.median(r.per_grant.get(what, 0.0) for r in done):.2f}"
                                  for what in sorted(done[0].per_grant))
            cpu = statistics.median(r.result.cpu for r in done) * 1e6
            print(f"  {kind:<6} {rate:6.0f} grants/s {handoffs:6.0f} handoffs/s  Jain {jain:.3f}"
                  f"  client CPU {cpu:5.0f} us  per grant: {per_grant}")
        ours = [r.result.handoffs for r in runs["ours"]]
        ours_grants = [r.result.grants for r in runs["ours"]]
        missed += _common.print_ratios([
            (f"{name} N={n}: ours / floor, handoffs/s",
             _common.paired_ratio(ours, [r.result.handoffs for r in runs["floor"]]), 0.95),
            (f"{name} N={n}: ours / {peer}, handoffs/s",
             _common.paired_ratio(ours, [r.result.handoffs for r in runs[peer]]), 1.1),
            (f"{name} N={n}: ours / floor, grants/s",
             _common.paired_ratio(ours_grants, [r.result.grants for r in runs["floor"]]), None),
            (f"{name} N={n}: ours / {peer}, grants/s",
             _common.paired_ratio(ours_grants, [r.result.grants for r in runs[peer]]), None),
        ])
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", default="4,16,32")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="etcd,zookeeper")
    args = parser.parse_args(argv)
    clients = [int(n) for n in args.clients.split(",")]
    only = set(args.only.split(","))
    quiet_etcd3_watcher()
    missed = 0
    if "etcd" in only:
        with EtcdServer() as server:
            kinds: dict[str, OpenLock] = {"floor": etcd_floor, "etcd3": etcd3_contender, "ours": our_lock_quiet}
            work = etcd_work(server.members[0].client_url + "/metrics")
            missed += service("etcd", server.url, kinds, "etcd3", work, clients, args.seconds, args.rounds)
    if "zookeeper" in only:
        with ZooKeeperServer() as server:
            port = parse_url(server.url).host_list(2181)[0][1]
            missed += service("zookeeper", server.url,
                              {"floor": zookeeper_floor, "kazoo": kazoo_contender, "ours": _common.our_lock},
                              "kazoo", zookeeper_work(port), clients, args.seconds, args.rounds)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
