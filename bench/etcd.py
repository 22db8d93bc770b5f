"""Benchmark of the etcd backend against the raw floor and python3-etcd3's own Lock.

    python bench/etcd.py [--url etcd://127.0.0.1:2379] [--iterations 2000] [--seconds 5]

Without ``--url`` it starts its own single etcd node (fencing_coord.servers.etcd) in a
temporary directory. One run prints:

* uncontended acquire+release per second, one client, one lock, for
  - the raw floor: one create transaction (put if absent, with a lease granted
    beforehand) plus one delete, on the same gRPC channel, no library around them;
  - python3-etcd3's ``Lock`` (``client.lock(name).acquire()/release()``);
  - this library's ``backend.acquire()/release()``;
* contended lock handoffs per second, 4 client processes on one lock, for
  python3-etcd3's ``Lock`` and for this library. A handoff is a grant to a different
  client than the previous one (re-grants to the same client do not count);
* the ratios the issue sets targets for: ours / floor >= 0.85, ours / etcd3 Lock
  >= 1.4 uncontended, and ours >= etcd3 Lock contended.

The uncontended kinds run in interleaved rounds (``--rounds`` of ``--iterations``
pairs, the order rotating); rates are medians over the rounds, ratios the medians of
the ratios within each round. The contended runs take ``--seconds`` each.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import _common  # bench/_common.py: this script's directory is on sys.path
import etcd3
import grpc
from _common import Give, Step, Take
from etcd3 import etcdrpc

from fencing_coord.config import parse_url
from fencing_coord.servers.etcd import EtcdServer


@contextlib.contextmanager
def raw_floor(url: str) -> Iterator[Step]:
    """One create txn plus one delete per step, existing lease, same channel."""
    host, port = parse_url(url).host_list(2379)[0]
    channel = grpc.insecure_channel(f"{host}:{port}")
    kv, leases = etcdrpc.KVStub(channel), etcdrpc.LeaseStub(channel)
    lease = leases.LeaseGrant(etcdrpc.LeaseGrantRequest(TTL=3600)).ID  # outlives the run: no keepalive here
    key = f"/bench/floor/{uuid.uuid4().hex}".encode()
    absent = etcdrpc.Compare(key=key, target=etcdrpc.Compare.CREATE, result=etcdrpc.Compare.EQUAL, create_revision=0)
    create = etcdrpc.TxnRequest(
        compare=[absent], success=[etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=b"x", lease=lease))]
    )
    delete = etcdrpc.DeleteRangeRequest(key=key)

    def step() -> None:
        if not kv.Txn(create, timeout=5).succeeded:
            raise RuntimeError("the floor's key was not free")
        kv.DeleteRange(delete, timeout=5)

    try:
        yield step
    finally:
        leases.LeaseRevoke(etcdrpc.LeaseRevokeRequest(ID=lease))
        channel.close()


def etcd3_client(url: str) -> Any:
    host, port = parse_url(url).host_list(2379)[0]
    return etcd3.client(host=host, port=port, timeout=10)


@contextlib.contextmanager
def etcd3_lock(url: str) -> Iterator[Step]:
    """python3-etcd3's own Lock: acquire (a new lease + a txn) and release (a txn)."""
    client = etcd3_client(url)
    try:
        yield _common.library_step(client.lock(f"bench-{uuid.uuid4().hex}", ttl=30), "etcd3 Lock")
    finally:
        client.close()


# -- contended: one process per client ----------------------------------------------------------


def quiet_etcd3_watcher() -> list[BaseException]:
    """python3-etcd3 0.13's watcher thread dies with ``NameError: six`` whenever its
    stream ends (watch.py uses ``six`` without importing it). That is noise here: keep
    those errors out of the output and return the list they are collected in."""
    default = threading.excepthook
    seen: list[BaseException] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, NameError) and "six" in str(args.exc_value):
            seen.append(args.exc_value)
        else:
            default(args)

    threading.excepthook = hook
    return seen


@contextlib.contextmanager
def etcd3_contender(url: str, name: str) -> Iterator[tuple[Take, Give]]:
    """python3-etcd3's Lock ``name`` for a contending process."""
    client = etcd3_client(url)
    try:
        yield _common.library_lock(client.lock(name, ttl=30), "etcd3 Lock")
    finally:
        client.close()


@contextlib.contextmanager
def etcd_url(given: str | None, data_dir: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(tempfile.TemporaryDirectory(prefix="fc-bench-etcd-", dir=data_dir))
        server = stack.enter_context(EtcdServer(base_dir=base))
        yield server.url


def main(argv: list[str] | None = None) -> int:
    parser = _common.argument_parser(__doc__, url_help="an etcd:// URL; default: start a local single node",
                                     seconds=5.0)
    parser.add_argument("--data-dir", help="where the local etcd keeps its data (default: the temp dir);"
                        " a tmpfs such as /dev/shm takes the disk's fsync out of the figures")
    args = parser.parse_args(argv)
    main_errors = quiet_etcd3_watcher()

    with etcd_url(args.url, args.data_dir) as url:
        print(f"etcd: {url}  python {sys.version.split()[0]}  etcd3 {etcd3.__version__}  grpcio {grpc.__version__}")
        measured = _common.uncontended(
            {"floor": raw_floor(url), "etcd3": etcd3_lock(url), "ours": _common.ours(url)}, args.iterations, args.rounds
        )
        _common.print_rates({
            "raw floor (create txn + delete, existing lease)": measured.rates["floor"],
            "python3-etcd3 Lock": measured.rates["etcd3"],
            "fencing-coord etcd backend": measured.rates["ours"],
        }, rounds=args.rounds, iterations=args.iterations)

        # Every client process keeps python3-etcd3's watcher noise out of the output; the
        # note below is about the python3-etcd3 Lock's processes and this one.
        theirs = _common.contended(etcd3_contender, url, args.clients, args.seconds, quiet=quiet_etcd3_watcher)
        mine = _common.contended(_common.our_lock, url, args.clients, args.seconds, quiet=quiet_etcd3_watcher)
        print(f"\ncontended, {args.clients} client processes on one lock, {args.seconds:g} s each")
        print(f"  python3-etcd3 Lock          {theirs.grants:8.0f} grants/s  {theirs.handoffs:8.0f} handoffs/s")
        print(f"  fencing-coord etcd backend  {mine.grants:8.0f} grants/s  {mine.handoffs:8.0f} handoffs/s")
        if theirs.kept_out + len(main_errors):
            print("  (python3-etcd3's watcher thread raised NameError: six when its streams closed at client"
                  " close: a bug of python3-etcd3 0.13, kept out of this output)")

        print("\nratios (target; uncontended: median of the per-round ratios)")
        failed = _common.print_ratios([
            ("uncontended, ours / raw floor", measured.ratios["floor"], 0.85),
            ("uncontended, ours / python3-etcd3 Lock", measured.ratios["etcd3"], 1.4),
            ("contended handoffs, ours / python3-etcd3 Lock", mine.handoffs / max(theirs.handoffs, 1e-9), 1.0),
        ])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
