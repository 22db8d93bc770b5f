"""Where the client CPU of a contended etcd lock goes: per thread of every contending
process, per grant, for the floor of ``contention.py`` and ours.

    python bench/thread_cpu.py [--clients 4,32] [--seconds 5] [--rounds 2] [--kinds floor,ours]

Like ``contention.py``, N spawned processes take and give back one lock for a few
seconds (the kinds in interleaved rounds). Each process reads, from the start of the
measured run to its end, every thread's time on the CPU and its number of time slices
(``/proc/self/task/*/schedstat``: nanoseconds, so short runs are exact), and notes the
CPU time of every thread that ends meanwhile (``time.thread_time()`` as it ends; gRPC
starts two for every watch stream: its request thread and, for the channel's first open
stream, the thread that serves the channel's streams). Printed per kind and N: grants/s,
CPU per grant (``time.process_time``, all processes), then per kind of thread the CPU
per grant and its slices per grant (ended threads: how many ended per grant). Thread
kinds: our threads by name, gRPC's Python threads by their function, gRPC's C threads
by their kernel name (``C:``), ``main`` the thread that takes the lock; and ``etcd
server``, the server process's CPU per grant (user + system, 10 ms ticks, read from just
before the run to the last result: it shares the machine's cores with the clients).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import statistics
import sys
import threading
import time
import types
import uuid
from typing import Any

import _common  # bench/_common.py: this script's directory is on sys.path
from contention import etcd_floor, our_lock_quiet  # bench/contention.py

from fencing_coord.servers.etcd import EtcdServer

#: Per kind of thread: (CPU seconds, slices or threads ended) over a run.
Usage = dict[str, tuple[float, float]]

_GRPC_THREADS = ("consume_request_iterator", "channel_spin")


def _thread_kind(name: str) -> str:
    return re.sub(r"-etcds?://.*$", "", name)


def _tasks() -> dict[int, tuple[str, int, int]]:
    """Per thread id of this process: (kernel name, ns on the CPU, slices)."""
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as stat:
                ran, _waited, slices = (int(field) for field in stat.read().split())
            with open(f"/proc/self/task/{tid}/comm") as comm:
                name = comm.read().strip()
        except OSError:  # ended meanwhile
            continue
        found[int(tid)] = (name, ran, slices)
    return found


class _EndedThreads:
    """The CPU time of the Python threads that end while :attr:`on`, by kind."""

    def __init__(self) -> None:
        self.on = False
        self.used: dict[str, float] = collections.defaultdict(float)
        self.count: dict[str, int] = collections.defaultdict(int)
        self._lock = threading.Lock()
        original = threading.Thread.run

        def run(thread: threading.Thread) -> None:
            try:
                original(thread)
            finally:
                if self.on:
                    with self._lock:
                        self.used[_thread_kind(thread.name)] += time.thread_time()
                        self.count[_thread_kind(thread.name)] += 1

        def name_grpc_threads(frame: types.FrameType, event: str, _arg: object) -> None:
            if event == "call" and frame.f_code.co_name in _GRPC_THREADS:
                threading.current_thread().name = f"gRPC {frame.f_code.co_name}"
                sys.setprofile(None)

        setattr(threading.Thread, "run", run)  # noqa: B010 (mypy refuses assigning a method)
        threading.setprofile(name_grpc_threads)


def _contender(kind: str, url: str, name: str, ready: Any, go: Any, stop_at: Any, out: Any) -> None:
    ended = _EndedThreads()
    open_lock = etcd_floor if kind == "floor" else our_lock_quiet
    grants = 0
    with open_lock(url, name) as (take, give):
        ready.wait()
        go.wait()
        stop = stop_at.value
        before = _tasks()
        cpu = time.process_time()
        ended.on = True
        while time.time() < stop:
            held = take()
            grants += 1
            give(held)
        ended.on = False
        cpu = time.process_time() - cpu
        after = _tasks()
        names = {thread.native_id: _thread_kind(thread.name) for thread in threading.enumerate()}
    usage: Usage = {}
    for tid, (comm, ran, slices) in after.items():
        _, ran_before, slices_before = before.get(tid, (comm, 0, 0))
        kind_of = "main" if tid == os.getpid() else names.get(tid, f"C:{comm}")
        used, count = usage.get(kind_of, (0.0, 0.0))
        usage[kind_of] = (used + (ran - ran_before) / 1e9, count + slices - slices_before)
    for kind_of, used in ended.used.items():
        usage[f"{kind_of} [ended]"] = (used, float(ended.count[kind_of]))
    out.send((grants, cpu, usage))
    out.close()


def _process_cpu(pid: int | None) -> float:
    """CPU seconds used so far by process ``pid`` (0.0 if unknown)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(kind: str, url: str, clients: int, seconds: float,
            server_pid: int | None) -> tuple[float, float, Usage]:
    """grants/s, CPU seconds per grant and per kind of thread (CPU, count) per grant;
    the server's CPU per grant as kind ``etcd server``."""
    name = f"cpu-{uuid.uuid4().hex[:8]}"
    pipes, procs = _common.start_contenders(clients, seconds, lambda ready, go, stop_at, send: (
        _contender, (kind, url, name, ready, go, stop_at, send)))
    server_cpu = _process_cpu(server_pid)  # from the start, as the clients' own figures
    grants, cpu = 0, 0.0
    total: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for receive in pipes:
        got, used, usage = receive.recv()
        grants += got
        cpu += used
        for kind_of, (seconds_used, count) in usage.items():
            total[kind_of][0] += seconds_used
            total[kind_of][1] += count
    total["etcd server"] = [_process_cpu(server_pid) - server_cpu, 0.0]  # to the last process's end
    for proc in procs:
        proc.join()
    per = max(grants, 1)
    return grants / seconds, cpu / per, {k: (v[0] / per, v[1] / per) for k, v in total.items()}


def _median(values: list[float], runs: int) -> float:
    return statistics.median(values + [0.0] * (runs - len(values)))


def report(kind: str, clients: int, runs: list[tuple[float, float, Usage]]) -> None:
    rates = ", ".join(f"{rate:.0f}" for rate, _, _ in runs)
    cpus = ", ".join(f"{cpu * 1e6:.0f}" for _, cpu, _ in runs)
    print(f"\n{kind}, {clients} processes: grants/s {rates}; CPU per grant {cpus} us (per round; medians below)")
    kinds = sorted({k for _, _, usage in runs for k in usage})
    rows = [(k, _median([u[k][0] for _, _, u in runs if k in u], len(runs)),
             _median([u[k][1] for _, _, u in runs if k in u], len(runs))) for k in kinds]
    for kind_of, used, count in sorted(rows, key=lambda row: -row[1]):
        if used >= 5e-6:
            what = "threads ended" if kind_of.endswith("[ended]") else "slices" if count else ""
            print(f"  {kind_of:40s} {used * 1e6:6.0f} us/grant" + (f"  {count:6.2f} {what}/grant" if what else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", default="4,32")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kinds", default="floor,ours")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    with EtcdServer() as server:
        for clients in (int(n) for n in args.clients.split(",")):
            runs: dict[str, list[tuple[float, float, Usage]]] = {kind: [] for kind in kinds}
            for r in range(args.rounds):
                for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
                    runs[kind].append(one_run(kind, server.url, clients, args.seconds,
                                              server.members[0].process.pid))
            for kind in kinds:
                report(kind, clients, runs[kind])
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
