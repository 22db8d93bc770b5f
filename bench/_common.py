"""What the benchmarks share: interleaved measurement rounds with medians of paired
ratios, this library's side of a lock benchmark, contended runs of client processes,
and the printed tables.

The benchmarks import it as a sibling module (``import _common``): Python puts a
script's own directory first on ``sys.path`` when it is run by path, as in
``python bench/etcd.py``, and so does a ``multiprocessing`` "spawn" child of it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, TypeVar, cast

import fencing_coord as fc

T = TypeVar("T")
Step = Callable[[], None]
#: Take a lock (blocking); what it returns is handed to the matching Give.
Take = Callable[[], object]
Give = Callable[[object], object]
#: ``open_lock(url, name)``: a client of lock ``name`` for one contending process.
OpenLock = Callable[[str, str], AbstractContextManager[tuple[Take, Give]]]


def argument_parser(doc: str | None, *, url_help: str, seconds: float) -> argparse.ArgumentParser:
    """The options every lock benchmark takes (its own are added by the caller)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--url", help=url_help)
    parser.add_argument("--iterations", type=int, default=200, help="acquire+release pairs per round and kind")
    parser.add_argument("--rounds", type=int, default=25, help="interleaved uncontended rounds")
    parser.add_argument("--seconds", type=float, default=seconds, help="duration of each contended run")
    parser.add_argument("--clients", type=int, default=4, help="contending client processes")
    return parser


# -- interleaved rounds ---------------------------------------------------------------------------


def interleaved(measure: Mapping[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Take every measurement once per round, ``rounds`` times; per kind, what each round
    measured. The order rotates every round (with two kinds: who goes first alternates),
    so that no kind always runs first, right after another's load."""
    order = list(measure)
    per_round: dict[str, list[T]] = {kind: [] for kind in order}
    for r in range(rounds):
        shift = r % len(order)
        for kind in order[shift:] + order[:shift]:
            per_round[kind].append(measure[kind]())
    return per_round


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of the ratios of values measured in the same round: neighbouring
    batches share the machine's (and the disk's) mood of the moment, so their ratio is
    steadier than a ratio of medians on a busy host."""
    return statistics.median(n / max(d, 1e-9) for n, d in zip(numerators, denominators, strict=True))


# -- uncontended --------------------------------------------------------------------------------


def warm(step: Step, iterations: int) -> None:
    for _ in range(min(100, iterations)):  # connections, caches, first-use costs
        step()


def rate(step: Step, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return iterations / (time.perf_counter() - start)


def library_step(lock: Any, what: str) -> Step:
    """Acquire and release a client library's own lock object (``acquire(timeout=...)``
    returning whether it got the lock, and ``release()``); ``what`` names it when it is
    not got within 5 s."""

    def step() -> None:
        if not lock.acquire(timeout=5):
            raise RuntimeError(f"{what} was not acquired")
        lock.release()

    return step


@contextlib.contextmanager
def ours(url: str) -> Iterator[Step]:
    """This library: ``backend.release(backend.acquire(...))`` per step."""
    with fc.connect(url, ttl=30, namespace=f"bench-{uuid.uuid4().hex[:8]}") as backend:

        def step() -> None:
            backend.release(backend.acquire("orders", timeout=5))

        yield step


class Measured(NamedTuple):
    """Per kind: the median rate over the rounds; per other kind: the median of the
    ratios ours / theirs measured within each round (see :func:`paired_ratio`)."""

    rates: dict[str, float]
    ratios: dict[str, float]


def uncontended(kinds: Mapping[str, AbstractContextManager[Step]], iterations: int, rounds: int) -> Measured:
    """Interleaved rounds of ``iterations`` steps of every kind (one of them ``ours``),
    each warmed up first."""
    with contextlib.ExitStack() as stack:
        steps = {kind: stack.enter_context(opened) for kind, opened in kinds.items()}
        for step in steps.values():
            warm(step, iterations)
        per_round = interleaved({kind: functools.partial(rate, step, iterations) for kind, step in steps.items()},
                                rounds)
    return Measured(
        rates={kind: statistics.median(values) for kind, values in per_round.items()},
        ratios={kind: paired_ratio(per_round["ours"], values) for kind, values in per_round.items() if kind != "ours"},
    )


def print_rates(rates: Mapping[str, float], *, rounds: int, iterations: int) -> None:
    """The uncontended table: one line per label, in order."""
    print(f"\nuncontended acquire+release per second (1 client; median of {rounds} interleaved rounds"
          f" of {iterations})")
    width = max(len(label) for label in rates)
    for label, value in rates.items():
        print(f"  {label:{width}s} {value:10.0f}/s")


# -- contended: one process per client ----------------------------------------------------------


@contextlib.contextmanager
def our_lock(url: str, name: str) -> Iterator[tuple[Take, Give]]:
    """This library's lock for a contending process, in namespace ``name``."""
    with fc.connect(url, ttl=30, namespace=name) as backend:
        yield (lambda: backend.acquire("orders", timeout=30)), cast(Give, backend.release)


def library_lock(lock: Any, what: str) -> tuple[Take, Give]:
    """Take and give for a client library's own lock object (as :func:`library_step`);
    ``what`` names it when it is not got within 30 s."""

    def take() -> object:
        if not lock.acquire(timeout=30):
            raise RuntimeError(f"{what} was not acquired")
        return lock

    def give(_: object) -> None:
        lock.release()

    return take, give


def _contender(open_lock: OpenLock, url: str, name: str, ready: Any, go: Any, stop_at: Any, out: Any,
               quiet: Callable[[], Sized] | None) -> None:
    """Take and give back lock ``name`` from when every process is connected (``ready``,
    then ``go``) until ``stop_at`` (time.time()); send back the time.monotonic() of every
    grant (one clock for every process), the CPU time used meanwhile, and how many
    errors ``quiet`` (if given, called first) kept out of the output."""
    kept_out = quiet() if quiet is not None else ()
    grants: list[float] = []
    with open_lock(url, name) as (take, give):
        ready.wait()
        go.wait()
        stop = stop_at.value
        cpu = time.process_time()
        while time.time() < stop:
            held = take()
            grants.append(time.monotonic())
            give(held)
        cpu = time.process_time() - cpu
    out.send((os.getpid(), grants, cpu, len(kept_out)))
    out.close()


class Contended(NamedTuple):
    """One contended run."""

    grants: float  # per second
    handoffs: float  # grants to another client than the previous one, per second
    cpu: float  # client CPU seconds per grant, all processes together
    kept_out: int  # errors the processes' ``quiet`` kept out of the output
    fairness: float = 1.0  # Jain's index of the grants per client (1.0: all got as many)


def start_contenders(clients: int, seconds: float,
                     task: Callable[[Any, Any, Any, Any], tuple[Callable[..., None], tuple[Any, ...]]],
                     ) -> tuple[list[Any], list[Any]]:
    """Spawn ``clients`` processes, each running ``target(*args)`` for ``(target, args) =
    task(ready, go, stop_at, send)``: a barrier to pass once connected, an event to start
    on, the time.time() to stop at (set here, ``seconds`` after all passed ``ready``),
    and the end of a pipe to send results on. Returns the pipes' receiving ends and the
    processes, started and going."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, stop_at = ctx.Barrier(clients + 1), ctx.Event(), ctx.Value("d", 0.0)
    pipes, procs = [], []
    for _ in range(clients):
        receive, send = ctx.Pipe(duplex=False)
        target, args = task(ready, go, stop_at, send)
        proc = ctx.Process(target=target, args=args)
        proc.start()
        pipes.append(receive)
        procs.append(proc)
    ready.wait(120)
    stop_at.value = time.time() + seconds
    go.set()
    return pipes, procs


def contended(open_lock: OpenLock, url: str, clients: int, seconds: float, *,
              quiet: Callable[[], Sized] | None = None) -> Contended:
    """``clients`` processes, each with its own ``open_lock(url, name)``, on one lock for
    ``seconds`` from when all of them are connected. ``open_lock`` and ``quiet`` must be
    module-level (they are pickled for the spawned processes)."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    pipes, procs = start_contenders(clients, seconds, lambda ready, go, stop_at, send: (
        _contender, (open_lock, url, name, ready, go, stop_at, send, quiet)))
    timeline: list[tuple[float, int]] = []
    per_client: list[int] = []
    cpu = 0.0
    kept_out = 0
    for receive in pipes:
        pid, grants, used, errors = receive.recv()
        per_client.append(len(grants))
        timeline.extend((t, pid) for t in grants)
        cpu += used
        kept_out += errors
    for proc in procs:
        proc.join()
    timeline.sort()
    handoffs = sum(1 for (_, a), (_, b) in itertools.pairwise(timeline) if a != b)
    return Contended(len(timeline) / seconds, handoffs / seconds, cpu / max(len(timeline), 1), kept_out,
                     jain_index(per_client))


# -- verdicts -----------------------------------------------------------------------------------


def print_ratios(rows: Sequence[tuple[str, float, float | None]]) -> int:
    """One line per (label, ratio, target): ``ok`` or ``MISSED`` against a target, or
    ``(reported)`` for a target of None. Returns how many targets were missed."""
    missed = 0
    for label, ratio, target in rows:
        if target is None:
            print(f"  {label:48s} {ratio:6.2f}x  (reported)")
            continue
        ok = ratio >= target
        missed += not ok
        print(f"  {label:48s} {ratio:6.2f}x  (>= {target:g}x) {'ok' if ok else 'MISSED'}")
    return missed


# -- handoff latency: two processes passing one lock back and forth ------------------------------


def _handoff_side(open_lock: OpenLock, url: str, name: str, me: int, count: int, settle: float,
                  waiting: Sequence[Any], started: Any, out: Any) -> None:
    """Process ``me`` (0 or 1) of a handoff run. Round k's holder is k % 2: it waits until
    the other process is about to call ``take`` (plus ``settle`` seconds, for its
    request to be queued and its watch in place), gives the lock back and notes the
    time.monotonic() at which ``give`` returned; the other notes when ``take`` returned.
    Sends back {round: time} for both."""
    released: dict[int, float] = {}
    acquired: dict[int, float] = {}
    with open_lock(url, name) as (take, give):
        held: object = take() if me == 0 else None
        started.wait()
        for k in range(count):
            if k % 2 == me:  # the holder
                waiting[1 - me].wait()
                waiting[1 - me].clear()
                time.sleep(settle)
                give(held)
                released[k] = time.monotonic()
            else:
                waiting[me].set()
                held = take()
                acquired[k] = time.monotonic()
        if count % 2 == me:
            give(held)
    out.send((released, acquired))
    out.close()


def handoff_latencies(open_lock: OpenLock, url: str, count: int, settle: float = 0.02) -> list[float]:
    """Seconds from ``give`` returning in one process to ``take`` returning in the other,
    for ``count`` handoffs between two spawned processes (``open_lock`` module-level)."""
    ctx = multiprocessing.get_context("spawn")
    name = f"bench-{uuid.uuid4().hex[:8]}"
    waiting = [ctx.Event(), ctx.Event()]
    started = ctx.Barrier(2)
    pipes, procs = [], []
    for me in (0, 1):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_handoff_side,
                           args=(open_lock, url, name, me, count, settle, waiting, started, send))
        proc.start()
        pipes.append(receive)
        procs.append(proc)
    released: dict[int, float] = {}
    acquired: dict[int, float] = {}
    for receive in pipes:
        gave, took = receive.recv()
        released.update(gave)
        acquired.update(took)
    for proc in procs:
        proc.join()
    return [acquired[k] - released[k] for k in range(count)]


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def jain_index(counts: Sequence[float]) -> float:
    """Jain's fairness index of the grants each client got: 1.0 when all got as many."""
    total = sum(counts)
    return total * total / (len(counts) * sum(c * c for c in counts)) if total else 1.0
