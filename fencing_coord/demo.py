"""The pause scenario, with real processes: why a lock needs a fencing token.

One run of the scenario on one backend and one resource:

1. A *holder* process acquires the lock, writes through the resource with its token,
   checks that it still holds the lock, and is then paused (``SIGSTOP``) before its next
   write, as a GC pause or a swapped-out VM would pause it.
2. Its lease (etcd) or session (ZooKeeper) expires on the server: a paused process sends
   no keepalives. A *successor* process, queued behind the holder, is granted the lock
   with a larger token, writes, and exits.
3. The holder is resumed (``SIGCONT``) and performs the write it was about to do, with
   its old token.

Through an :class:`~fencing_coord.UnfencedResource` the late write is accepted and the
final value is the stale holder's: **corrupted**. Through a
:class:`~fencing_coord.FencedResource` it is refused (``stale token 7 < 9``) and the
successor's value stands: **refused**. The processes share one SQLite database
(:class:`~fencing_coord.stores.SQLiteStore`), which is what makes the check-and-write
atomic across them.

:func:`run_demo` runs the scenario on every backend, unfenced then fenced, and prints a
timeline per run and a verdict table; ``fencing-coord demo`` is its command line. The
holder and successor are this module run as a program (``python -m fencing_coord.demo
holder|successor ...``); they report what they do as JSON lines on stdout, stamped with
``time.monotonic()``, which is one clock for every process of the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from .config import connect, parse_url
from .errors import ConfigurationError, FencingCoordError
from .gate import FencedResource, UnfencedResource
from .stores.sqlite import SQLiteStore

__all__ = [
    "CORRUPTED",
    "REFUSED",
    "DemoError",
    "Event",
    "Outcome",
    "backend_label",
    "local_servers",
    "print_timeline",
    "print_verdicts",
    "run_demo",
    "run_scenario",
]

CORRUPTED = "corrupted"
REFUSED = "refused"
UNEXPECTED = "unexpected"

#: The resource and key every run writes; the lock has the same name.
RESOURCE = "ledger"
KEY = "balance"
FIRST_VALUE = "holder: first write"
LATE_VALUE = "holder: late write"
SUCCESSOR_VALUE = "successor: write"

#: Lease/session TTL the demo asks for, seconds. etcd raises it to its minimum (2 s by
#: default); ZooKeeper clamps it into the server's 2..20 x tickTime range.
DEFAULT_TTL = 2.0
#: How long a step may take beyond the TTL before the run is declared stuck.
STEP_SLACK = 30.0

class DemoError(FencingCoordError):
    """A run of the scenario could not be carried out (a process failed or got stuck)."""


@dataclass(frozen=True)
class Event:
    """One line of a timeline: ``t`` seconds after the run started, who did what."""

    t: float
    actor: str
    what: str
    token: int | None = None
    note: str = ""


@dataclass
class Outcome:
    """The result of one run: what the late write did and whose value survived."""

    backend: str
    url: str
    fenced: bool
    holder_token: int | None = None
    successor_token: int | None = None
    late_accepted: bool | None = None
    late_reason: str | None = None
    final_value: str | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def resource(self) -> str:
        return "fenced" if self.fenced else "unfenced"

    @property
    def final_from(self) -> str:
        """``holder (stale)``, ``successor`` or a description of something else."""
        if self.final_value == LATE_VALUE:
            return "holder (stale)"
        if self.final_value == SUCCESSOR_VALUE:
            return "successor"
        return f"? {self.final_value!r}"

    @property
    def verdict(self) -> str:
        """``corrupted``: the stale write was accepted and its value is the final one;
        ``refused``: it was refused and the successor's value stands; else ``unexpected``."""
        if self.late_accepted and self.final_value == LATE_VALUE:
            return CORRUPTED
        if self.late_accepted is False and self.final_value == SUCCESSOR_VALUE:
            return REFUSED
        return UNEXPECTED

    @property
    def expected(self) -> bool:
        """True when this run shows what it should: fenced refused, unfenced corrupted."""
        return self.verdict == (REFUSED if self.fenced else CORRUPTED)


def backend_label(url: str) -> str:
    """``etcd`` or ``zookeeper`` (or the scheme of a third-party backend) for ``url``."""
    scheme = parse_url(url).scheme
    return {"etcds": "etcd", "zk": "zookeeper"}.get(scheme, scheme)


# -- the parent: one run ---------------------------------------------------------------------


class _Child:
    """A holder or successor process and the events it reports, read by a thread."""

    def __init__(self, role: str, argv: list[str], stderr_path: Path) -> None:
        self.role = role
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1
            )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"demo-{role}-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))
        self.lines.put(None)  # end of output: the process exited

    def expect(self, event: str, timeout: float, seen: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the next report called ``event``, collecting every report into ``seen``;
        DemoError if the process exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                report = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise DemoError(f"the {self.role} did not report {event!r} within {timeout:.0f} s") from None
            if report is None:
                self.proc.wait()
                raise DemoError(
                    f"the {self.role} exited with status {self.proc.returncode} before reporting {event!r}:\n"
                    + self.stderr_tail()
                )
            seen.append(report)
            if report.get("event") == "error":
                raise DemoError(f"the {self.role} failed: {report.get('error')}")
            if report.get("event") == event:
                return report

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def finish(self, timeout: float) -> None:
        """Wait for the process to exit; kill it (after resuming it) if it does not."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _child_argv(role: str, url: str, lock: str, namespace: str, db: Path, fenced: bool, ttl: float) -> list[str]:
    return [
        sys.executable, "-m", "fencing_coord.demo", role,
        "--url", url, "--lock", lock, "--namespace", namespace, "--db", str(db),
        "--resource", "fenced" if fenced else "unfenced", "--ttl", str(ttl),
    ]


def run_scenario(url: str, *, fenced: bool, workdir: Path, ttl: float = DEFAULT_TTL) -> Outcome:
    """Run the pause scenario once against ``url`` and return its :class:`Outcome`.

    Uses a fresh namespace and a fresh SQLite database under ``workdir``. Raises
    :class:`DemoError` when a process fails or a step takes longer than the TTL plus
    :data:`STEP_SLACK` seconds; the processes it started are gone when it returns.
    """
    outcome = Outcome(backend_label(url), url, fenced)
    tag = uuid.uuid4().hex[:8]
    namespace, lock = f"demo-{tag}", RESOURCE
    db = workdir / f"{outcome.backend}-{outcome.resource}-{tag}.db"
    started = time.monotonic()
    reports: list[tuple[str, dict[str, Any]]] = []

    def note(actor: str, what: str, token: int | None = None, extra: str = "") -> None:
        outcome.events.append(Event(time.monotonic() - started, actor, what, token, extra))

    def collect(child: _Child, event: str, timeout: float) -> dict[str, Any]:
        seen: list[dict[str, Any]] = []
        try:
            return child.expect(event, timeout, seen)
        finally:
            reports.extend((child.role, r) for r in seen)
            for report in seen:
                _record(outcome, child.role, report, started)

    step = ttl + STEP_SLACK
    children: list[_Child] = []
    try:
        holder = _Child("holder", _child_argv("holder", url, lock, namespace, db, fenced, ttl),
                        workdir / f"holder-{tag}.stderr")
        children.append(holder)
        granted_ttl = float(collect(holder, "connected", step)["ttl"])  # what the server granted
        outcome.holder_token = collect(holder, "acquired", step)["token"]
        collect(holder, "checked", step)
        # The holder now waits for "go" right before its second write: pausing it here
        # is pausing it between its check and its write.
        holder.signal(signal.SIGSTOP)
        lease = lease_word(outcome.backend)
        note("demo", "SIGSTOP holder: paused, it sends no keepalives", extra=f"its {lease} ttl is {granted_ttl:g} s")

        successor = _Child("successor", _child_argv("successor", url, lock, namespace, db, fenced, ttl),
                           workdir / f"successor-{tag}.stderr")
        children.append(successor)
        # Blocks until the holder's lease/session has expired on the server.
        outcome.successor_token = collect(successor, "acquired", 4 * step)["token"]
        collect(successor, "released", step)
        successor.finish(step)

        holder.signal(signal.SIGCONT)
        note("demo", "SIGCONT holder: it resumes right before its write")
        holder.send("go")
        late = collect(holder, "wrote", step)
        outcome.late_accepted = bool(late["accepted"])
        outcome.late_reason = late.get("reason")
        collect(holder, "released", step)
        holder.finish(step)
    except BaseException:
        for child in children:  # a failed or interrupted run leaves no process behind
            child.finish(0)
        raise
    with SQLiteStore(db) as store:
        value = store.plain_read(RESOURCE, KEY)
    outcome.final_value = None if value is None else value.decode()
    outcome.events.sort(key=lambda e: e.t)
    return outcome


def _record(outcome: Outcome, actor: str, report: dict[str, Any], started: float) -> None:
    """Turn one child report into a timeline event."""
    t = float(report.get("t", time.monotonic())) - started
    token = report.get("token")
    kind = report.get("event")
    if kind == "connected":
        outcome.events.append(Event(t, actor, f"connected ({lease_word(outcome.backend)} ttl {report.get('ttl'):g} s)"))
    elif kind == "queued":
        outcome.events.append(Event(t, actor, "waits for the lock (queued behind the holder)"))
    elif kind == "acquired":
        note = f"the paused holder's {lease_word(outcome.backend)} expired" if actor == "successor" else ""
        outcome.events.append(Event(t, actor, f"acquired lock {RESOURCE!r}", token, note))
    elif kind == "checked":
        outcome.events.append(Event(t, actor, "checks its lock: still held; about to write", token))
    elif kind == "wrote":
        verdict = "accepted" if report.get("accepted") else f"REFUSED ({report.get('reason')})"
        if report.get("accepted") and report.get("value") == LATE_VALUE:
            verdict = "ACCEPTED (stale token)"
        outcome.events.append(Event(t, actor, f"writes {report.get('value')!r}", token, verdict))
    elif kind == "released":
        held = "released" if report.get("held") else "release: the lock was no longer held"
        outcome.events.append(Event(t, actor, held, token, report.get("lost_reason") or ""))


# -- the report ------------------------------------------------------------------------------


INTRO = """\
The pause scenario: a lock holder writes, checks that it still holds the lock, and is
paused (SIGSTOP) right before its next write. Its {lease} expires on the server; a
successor is granted the lock with a larger token and writes. The holder wakes up
(SIGCONT) and makes the write it was about to make, with its old token.
Each backend runs it twice: through an UnfencedResource and through a FencedResource
(the same SQLite database, shared by the processes).
"""


def lease_word(backend: str) -> str:
    """What the backend calls the thing that expires: ``lease`` (etcd), ``session``."""
    return "session" if backend == "zookeeper" else "lease"


def print_timeline(outcome: Outcome, out: TextIO) -> None:
    """Print one run: seconds since it started, who did what, with which token."""
    out.write(f"\n== {outcome.backend}, {outcome.resource} resource ({outcome.url})\n")
    width = max(len(e.what) for e in outcome.events)
    for event in outcome.events:
        token = f"token {event.token}" if event.token is not None else ""
        line = f"  {event.t:7.3f}s  {event.actor:<9}  {event.what:<{width}}  {token:<9} {event.note}"
        out.write(line.rstrip() + "\n")
    out.write(f"  final value: {outcome.final_value!r}, from the {outcome.final_from} -> {outcome.verdict}\n")


def print_verdicts(outcomes: Sequence[Outcome], out: TextIO) -> None:
    """Print the verdict table and one greppable line per backend:
    ``etcd: fenced=refused unfenced=corrupted``."""
    headers = ("backend", "resource", "holder token", "successor token", "late write", "final value from", "verdict")
    rows = [
        (
            o.backend, o.resource, str(o.holder_token), str(o.successor_token),
            "accepted" if o.late_accepted else "refused" if o.late_accepted is False else "?",
            o.final_from, o.verdict,
        )
        for o in outcomes
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out.write("\n")
    for row in (headers, tuple("-" * w for w in widths), *rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write("\n")
    by_backend: dict[str, dict[str, str]] = {}
    for o in outcomes:
        by_backend.setdefault(o.backend, {})[o.resource] = o.verdict
    for backend, verdicts in by_backend.items():
        out.write(f"{backend}: fenced={verdicts.get('fenced', '?')} unfenced={verdicts.get('unfenced', '?')}\n")


def run_demo(urls: Sequence[str], out: TextIO, *, ttl: float = DEFAULT_TTL) -> list[Outcome]:
    """Run the scenario unfenced, then fenced, on every URL, printing each run's timeline
    as it ends, then the verdict table. Returns the outcomes
    (``all(o.expected for o in outcomes)`` is success).

    Raises :class:`ConfigurationError` for a URL whose backend cannot contend across
    processes (``memory://``), :class:`BackendUnavailable` when a server cannot be
    reached, :class:`DemoError` when a run fails.
    """
    for url in urls:
        _check_url(url)
    labels = {backend_label(url) for url in urls}
    out.write("\n" + INTRO.format(lease="/".join(sorted({lease_word(b) for b in labels}))))
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="fencing-coord-demo-") as tmp:
        for url in urls:
            for fenced in (False, True):
                outcome = run_scenario(url, fenced=fenced, workdir=Path(tmp), ttl=ttl)
                print_timeline(outcome, out)
                out.flush()
                outcomes.append(outcome)
    print_verdicts(outcomes, out)
    return outcomes


def _check_url(url: str) -> None:
    """Connect once: a bad URL or an unreachable server fails before any process starts."""
    with connect(url, ttl=DEFAULT_TTL) as backend:
        if not backend.capabilities.multiprocess:
            raise ConfigurationError(
                f"{url}: the demo runs the holder and the successor as separate processes, and this "
                "backend cannot be shared between processes; use etcd:// or zookeeper://"
            )


@contextlib.contextmanager
def local_servers(out: TextIO) -> Iterator[list[str]]:
    """Start a single-node etcd and a standalone ZooKeeper from the binaries on PATH, yield
    their URLs, stop them (and delete their data) on exit. Raises
    :class:`~fencing_coord.devservers.MissingSoftware`, naming the packages to install,
    when a binary is missing."""
    from .devservers import require_servers
    from .servers.etcd import EtcdServer
    from .servers.zookeeper import ZooKeeperServer

    require_servers(etcd=True, zookeeper=True)
    with contextlib.ExitStack() as stack:
        out.write("starting local servers from the binaries on PATH: etcd (single node), ZooKeeper (standalone)\n")
        out.flush()
        etcd = stack.enter_context(EtcdServer())
        zookeeper = stack.enter_context(ZooKeeperServer())
        out.write(f"  etcd:      {etcd.url}\n  zookeeper: {zookeeper.url}\n")
        yield [etcd.url, zookeeper.url]


# -- the children ----------------------------------------------------------------------------


def _emit(stream: IO[str], event: str, **fields: Any) -> None:
    stream.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
    stream.flush()


def _child_main(argv: Sequence[str]) -> int:
    """``python -m fencing_coord.demo holder|successor ...``: one participant.

    The holder acquires, writes, checks its grant, reports ``checked`` and waits for a
    line on stdin (the parent pauses it there) before its late write. The successor
    acquires (waiting behind the holder), writes and releases. Both report JSON lines.
    """
    parser = argparse.ArgumentParser(prog="python -m fencing_coord.demo")
    parser.add_argument("role", choices=["holder", "successor"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--lock", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--resource", choices=["fenced", "unfenced"], required=True)
    parser.add_argument("--ttl", type=float, default=DEFAULT_TTL)
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        identity = f"{args.role}:{os.getpid()}"
        with SQLiteStore(args.db) as store, \
                connect(args.url, ttl=args.ttl, namespace=args.namespace, identity=identity) as backend:
            resource = FencedResource(store) if args.resource == "fenced" else UnfencedResource(store)
            _emit(out, "connected", ttl=backend.ttl)
            grant = backend.acquire(args.lock, timeout=4 * (args.ttl + STEP_SLACK),
                                    on_queued=lambda: _emit(out, "queued"))
            _emit(out, "acquired", token=grant.token)
            if args.role == "holder":
                result = resource.write(RESOURCE, KEY, FIRST_VALUE.encode(), token=grant.token)
                _emit(out, "wrote", token=grant.token, value=FIRST_VALUE, accepted=result.accepted,
                      reason=result.reason)
                # The check a careful holder makes; the pause comes right after it.
                _emit(out, "checked", token=grant.token, lost=grant.lost)
                sys.stdin.readline()
                value = LATE_VALUE
            else:
                value = SUCCESSOR_VALUE
            result = resource.write(RESOURCE, KEY, value.encode(), token=grant.token)
            _emit(out, "wrote", token=grant.token, value=value, accepted=result.accepted, reason=result.reason)
            held = backend.release(grant)
            _emit(out, "released", token=grant.token, held=held, lost_reason=grant.lost_reason)
    except FencingCoordError as exc:
        _emit(out, "error", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
