"""One run of the pause scenario: start the holder and the successor, pause, resume, record."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import parse_url
from ..errors import FencingCoordError
from ..stores.sqlite import SQLiteStore

__all__ = [
    "CORRUPTED",
    "DEFAULT_TTL",
    "FIRST_VALUE",
    "KEY",
    "LATE_VALUE",
    "REFUSED",
    "RESOURCE",
    "STEP_SLACK",
    "SUCCESSOR_VALUE",
    "UNEXPECTED",
    "DemoError",
    "Event",
    "Outcome",
    "backend_label",
    "lease_word",
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
    #: What the holder and successor processes measured: ``[name, labels, values]``
    #: (see :meth:`~fencing_coord.observability.RecordingSink.samples`).
    metrics: list[Any] = field(default_factory=list)

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
        outcome.metrics.extend(collect(successor, "metrics", step)["samples"])
        successor.finish(step)

        holder.signal(signal.SIGCONT)
        note("demo", "SIGCONT holder: it resumes right before its write")
        holder.send("go")
        late = collect(holder, "wrote", step)
        outcome.late_accepted = bool(late["accepted"])
        outcome.late_reason = late.get("reason")
        collect(holder, "released", step)
        outcome.metrics.extend(collect(holder, "metrics", step)["samples"])
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


def lease_word(backend: str) -> str:
    """What the backend calls the thing that expires: ``lease`` (etcd), ``session``."""
    return "session" if backend == "zookeeper" else "lease"
