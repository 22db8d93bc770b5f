"""The CPU a process uses while it waits for an etcd lock another process holds: ours
(``fc.connect`` with the contention bench's TTL, 30 s), ours without lease keepalives
in the window (the keepalive's share is the difference), and the floor of
``contention.py`` (its lease has no keepalive).

    python bench/idle_waiter.py [--seconds 20] [--warm-up 1.5] [--rounds 2] [--kinds floor,ours,ours-no-keepalive]

Per kind and round, one process takes the lock and holds it; a second one blocks in
acquire. From ``--warm-up`` seconds after the waiter connected (the keepalive's first
round is 10 s after it connected; 11 s leaves it out), for ``--seconds``, the waiter measures
its own CPU (``time.process_time``, every thread, those that end included) and per
thread (``/proc/self/task/*/schedstat``, ns; the measuring thread's own CPU left
out); then the holder lets go. Printed: ms of
CPU per second of waiting, per round, then per thread kind (median of the rounds;
``ended threads``: the CPU of threads that ended in the window, gRPC's request threads).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from contention import etcd_floor  # bench/contention.py
from thread_cpu import _GRPC_THREADS, _tasks, _thread_kind  # bench/thread_cpu.py

import fencing_coord as fc
from fencing_coord.servers.etcd import EtcdServer


def _name_grpc_threads() -> None:
    def name(frame: Any, event: str, _arg: object) -> None:
        if event == "call" and frame.f_code.co_name in _GRPC_THREADS:
            threading.current_thread().name = f"gRPC {frame.f_code.co_name}"
            sys.setprofile(None)

    threading.setprofile(name)


def _open(kind: str) -> Callable[[str, str], Any]:
    if kind == "ours-no-keepalive":
        from fencing_coord.backends.etcd.session import Session

        setattr(Session, "until_keepalive", lambda self, lease: 3600.0)  # noqa: B010
    return etcd_floor if kind == "floor" else _ours


@contextlib.contextmanager
def _ours(url: str, name: str) -> Iterator[tuple[Any, Any]]:
    """As contention.py's (ttl 30), with time to wait longer than a measured window."""
    with fc.connect(url, ttl=30, namespace=name) as backend:
        yield (lambda: backend.acquire("orders", timeout=600)), backend.release


def _holder(kind: str, url: str, name: str, held: Any, release: Any) -> None:
    with _open(kind)(url, name) as (take, give):
        key = take()
        held.set()
        release.wait(120)
        give(key)


def _waiter(kind: str, url: str, name: str, warm_up: float, seconds: float, out: Any, done: Any) -> None:
    _name_grpc_threads()
    with _open(kind)(url, name) as (take, give):

        def measure() -> None:
            time.sleep(warm_up)
            before, cpu = _tasks(), time.process_time()
            time.sleep(seconds)
            after, cpu = _tasks(), time.process_time() - cpu
            names = {t.native_id: _thread_kind(t.name) for t in threading.enumerate()}
            usage: dict[str, float] = {}
            for tid, (comm, ran, _slices) in after.items():
                kind_of = "main" if tid == os.getpid() else names.get(tid, f"C:{comm}")
                usage[kind_of] = usage.get(kind_of, 0.0) + (ran - before.get(tid, (comm, 0, 0))[1]) / 1e9
            usage["ended threads"] = cpu - sum(usage.values())
            cpu -= usage.pop("measure")  # reading /proc is this bench's own cost
            out.send((cpu, usage))
            done.set()

        threading.Thread(target=measure, name="measure", daemon=True).start()
        give(take())


def one_run(kind: str, url: str, warm_up: float, seconds: float) -> tuple[float, dict[str, float]]:
    ctx = multiprocessing.get_context("spawn")
    name = f"idle-{uuid.uuid4().hex[:8]}"
    held, release, done = ctx.Event(), ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    holder = ctx.Process(target=_holder, args=(kind, url, name, held, release))
    holder.start()
    if not held.wait(60):
        raise RuntimeError("the holder did not take the lock")
    waiter = ctx.Process(target=_waiter, args=(kind, url, name, warm_up, seconds, send, done))
    waiter.start()
    if not done.wait(warm_up + seconds + 60):
        raise RuntimeError("the waiter did not measure")
    cpu, usage = receive.recv()
    release.set()
    holder.join()
    waiter.join()
    return cpu / seconds, {k: v / seconds for k, v in usage.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warm-up", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kinds", default="floor,ours,ours-no-keepalive")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    runs: dict[str, list[tuple[float, dict[str, float]]]] = {kind: [] for kind in kinds}
    with EtcdServer() as server:
        for r in range(args.rounds):
            for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                runs[kind].append(one_run(kind, server.url, args.warm_up, args.seconds))
    for kind in kinds:
        per_round = ", ".join(f"{cpu * 1e3:.2f}" for cpu, _ in runs[kind])
        print(f"\n{kind}: waiting CPU {per_round} ms/s (per round)")
        names = sorted({k for _, usage in runs[kind] for k in usage})
        rows = [(k, statistics.median(u.get(k, 0.0) for _, u in runs[kind])) for k in names]
        for thread, used in sorted(rows, key=lambda row: -row[1]):
            if abs(used) >= 1e-6:
                print(f"  {thread:40s} {used * 1e3:7.3f} ms/s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
