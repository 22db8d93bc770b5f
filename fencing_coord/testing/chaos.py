"""A randomized fault campaign with a history checker.

    python -m fencing_coord.testing.chaos --backend etcd|zookeeper --seconds N --seed S

It starts a 3-member cluster of the backend, PostgreSQL and a SQLite file
(:mod:`.chaos_system`), then runs two phases against them:

1. *Fenced* (``--seconds``): workers (:mod:`.chaos_worker`) do fenced read-modify-writes
   on counters in three stores (SQLite, PostgreSQL and the service's own store), each
   counter guarded by its lock, while the nemesis (:mod:`.chaos_nemesis`) injects every
   kind of fault at random. The checker (:mod:`.chaos_check`) must find no violation.
2. *Control* (``--control-seconds``): the same workload through an UnfencedResource, on
   one counter, while the nemesis pauses lock holders past their TTL. The checker must
   find lost updates here: if it does not, the faults were too weak to show anything and
   the campaign is *inconclusive*.

It prints the fault rounds by kind and the checks' results, and exits 0 when the fenced
phase has no violation and the control lost updates, 1 on a violation or a worker crash,
2 when the system under test failed (a cluster that did not recover), 3 when
inconclusive. ``--seed`` makes the nemesis's and the workers' draws reproducible (the
timing of a real cluster is not). The run's directory (histories, nemesis log, server
logs, ``report.json``) is kept when the run fails, or with ``--dir``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FencingCoordError
from ..servers.etcd import EtcdMember
from ..servers.zookeeper import ZooKeeperMember
from .chaos_check import CHECKS, Report, check, read_history
from .chaos_nemesis import Nemesis
from .chaos_system import System, WorkerPool

__all__ = ["Phase", "main", "run_phase"]

TTL = 2.0


@dataclass
class Phase:
    """What one phase did and what the checker found."""

    name: str
    seconds: float
    rounds: Counter[str]
    skipped: Counter[str]
    report: Report
    crashes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


#: Set by SIGINT or SIGTERM: the phase in progress ends early and is still checked.
STOP = threading.Event()


def run_phase(system: System, name: str, *, stores: list[str], seconds: float, seed: int, unfenced: bool,
              counters: int, think: float, kinds: tuple[str, ...] | None = None,
              pause: tuple[float, float] | None = None) -> Phase:
    """Run workers and the nemesis for ``seconds`` (less if :data:`STOP` is set), heal,
    stop, read the final state and check the history."""
    phase_dir = system.run_dir / name
    pool = WorkerPool(system, phase_dir, stores=stores, counters=counters, prefix=f"{name}-", unfenced=unfenced,
                      seed=seed, ttl=TTL, think=think)
    nemesis = Nemesis(system, pool, seed=seed, ttl=TTL, log_path=phase_dir / "nemesis.jsonl", kinds=kinds,
                      pause=pause)
    pool.start_all()
    try:
        nemesis.start()
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and not STOP.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
                pool.check_crashes()
        finally:
            nemesis.stop()
            if system.lab is not None:
                system.lab.heal()
        errors = list(nemesis.errors)
        try:
            system.wait_serving(timeout=120)
        except FencingCoordError as exc:
            errors.append(f"the cluster did not serve again at the end: {exc}")
    finally:
        pool.stop_all()
    records = read_history(pool.histories())
    rounds, skipped = nemesis.counts()
    try:
        state = dump_state(system, stores, records)
    except FencingCoordError as exc:
        modes = ", ".join(f"{m.name}: {describe_member(m)}" for m in system.members)
        errors.append(f"the cluster did not serve again at the end ({modes}): {exc}")
        return Phase(name, seconds, rounds, skipped, Report(), pool.crashes, errors)
    return Phase(name, seconds, rounds, skipped, check(records, state), pool.crashes, errors)


def describe_member(member: EtcdMember | ZooKeeperMember) -> str:
    if not member.running():
        return "not running"
    if isinstance(member, ZooKeeperMember):
        return member.mode() or "not serving"
    return "healthy" if member.healthy() else "unhealthy"


def dump_state(system: System, stores: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The final counter and entries of every resource the history names, read by a
    ``chaos_worker dump`` process where the service's clients run."""
    wanted: dict[str, dict[str, int]] = {}
    for r in records:
        if r.get("n") is not None:
            per_store = wanted.setdefault(r["store"], {})
            per_store[r["resource"]] = max(per_store.get(r["resource"], 0), r["n"] + 1)
    argv = [sys.executable, "-m", "fencing_coord.testing.chaos_worker", "dump", system.url,
            "--resources", json.dumps(wanted)]
    for spec in stores:
        argv += ["--store", spec]
    done = subprocess.run(system.ctl_command(argv), capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise FencingCoordError(f"reading the final state failed: {done.stderr.strip()[-500:]}")
    state: dict[str, Any] = json.loads(done.stdout)
    return state


def print_report(args: argparse.Namespace, system: System, fenced: Phase, control: Phase) -> None:
    lab = "yes" if system.lab is not None else f"no ({system.lab_skipped}): network faults left out"
    print(f"\nfencing-coord chaos: {args.backend}, seed {args.seed}, fenced {fenced.seconds:g} s, "
          f"control {control.seconds:g} s, network lab: {lab}")
    print(f"\n{'fault rounds (fenced phase)':<28}{'run':>8}{'skipped':>9}")
    for kind in sorted(set(fenced.rounds) | set(fenced.skipped)):
        print(f"  {kind:<26}{fenced.rounds[kind]:>8}{fenced.skipped[kind]:>9}")
    print(f"  {'total':<26}{sum(fenced.rounds.values()):>8}{sum(fenced.skipped.values()):>9}")
    print(f"  control phase: {sum(control.rounds.values())} pause-holder rounds")
    for phase in (fenced, control):
        inc, rel = phase.report.increments, phase.report.releases
        print(f"\n{phase.name}: increments accepted {inc['accepted']}, refused {inc['refused']}, unknown "
              f"{inc['unknown']}; grants {phase.report.grants}; release() True {rel['True']}, False "
              f"{rel['False']}, unknown {rel['unknown']}")
    found, control_found = fenced.report.by_kind(), control.report.by_kind()
    print(f"\n{'check (violations found)':<34}{'fenced':>8}{'control (unfenced)':>20}")
    for kind in CHECKS:
        print(f"  {kind:<32}{found[kind]:>8}{control_found[kind]:>20}")
    for violation in fenced.report.violations[:20]:
        print(f"  VIOLATION {violation.kind}: {violation.detail}")
    for line in [*fenced.crashes, *control.crashes][:5]:
        print(f"  WORKER CRASH {line}")
    for line in [*fenced.errors, *control.errors][:10]:
        print(f"  NEMESIS {line}")


def verdict(fenced: Phase, control: Phase) -> tuple[int, str]:
    lost = control.report.by_kind()["lost increment"]
    if fenced.report.violations or fenced.crashes or control.crashes:
        return 1, f"FAIL: {len(fenced.report.violations)} violations, {len(fenced.crashes + control.crashes)} crashes"
    if any("did not serve again" in e for e in fenced.errors + control.errors):
        return 2, "ERROR: the cluster did not recover from a fault (see above)"
    if lost == 0:
        return 3, "INCONCLUSIVE: the unfenced control lost no update, so the faults showed nothing"
    return 0, f"PASS: no violation; the unfenced control lost {lost} updates under the same kind of fault"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fencing_coord.testing.chaos",
                                     description="A randomized fault campaign with a history checker.")
    parser.add_argument("--backend", choices=["etcd", "zookeeper"], required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the fenced phase")
    parser.add_argument("--control-seconds", type=float, default=None,
                        help="length of the unfenced control phase (default: a tenth of --seconds, 10..60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--counters", type=int, default=1, help="counters per store (each guarded by its lock)")
    parser.add_argument("--dir", type=Path, default=None, help="keep the run's files here")
    parser.add_argument("--no-lab", action="store_true", help="run on loopback, without network faults")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.workers < 2 or args.counters < 1:
        parser.error("need --seconds > 0, --workers >= 2 and --counters >= 1")
    control_seconds = args.control_seconds or min(60.0, max(10.0, args.seconds / 10))
    run_dir = args.dir or Path(tempfile.mkdtemp(prefix=f"fencing-coord-chaos-{args.backend}-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: STOP.set())
    with System(args.backend, run_dir, workers=args.workers, use_lab=not args.no_lab) as system:
        stores = [f"sqlite={run_dir / 'state.db'}", f"postgres={system.postgres_dsn()}", "service"]
        fenced = run_phase(system, "fenced", stores=stores, seconds=args.seconds, seed=args.seed, unfenced=False,
                           counters=args.counters, think=0.02)
        control = run_phase(system, "control", stores=stores[:1], seconds=control_seconds, seed=args.seed,
                            unfenced=True, counters=1, think=0.1, kinds=("pause-holder",),
                            pause=(TTL + 0.5, 2 * TTL + 0.5))
        print_report(args, system, fenced, control)
    code, summary = verdict(fenced, control)
    (run_dir / "report.json").write_text(json.dumps({
        "backend": args.backend, "seed": args.seed, "seconds": args.seconds, "exit": code, "summary": summary,
        "rounds": fenced.rounds, "skipped": fenced.skipped, "control_rounds": control.rounds,
        "violations": [v.__dict__ for v in fenced.report.violations],
        "control_violations": dict(control.report.by_kind()),
        "increments": fenced.report.increments, "grants": fenced.report.grants,
        "releases": fenced.report.releases, "crashes": fenced.crashes + control.crashes,
        "errors": fenced.errors + control.errors,
    }, indent=1))
    print(f"\n{summary}")
    if code == 0 and args.dir is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        print(f"run directory: {run_dir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
