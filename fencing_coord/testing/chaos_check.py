"""The history checker of the fault campaign (:mod:`fencing_coord.testing.chaos`).

Input: the workers' JSON-lines histories (:mod:`fencing_coord.testing.chaos_worker`) and
the final state of every resource (its ``counter``, its ``entry-<n>`` values
``"<op> <token>"``). What it proves, and how:

- *No lost and no double-counted increment.* The final counter C and entries 1..C are the
  increments the store kept, in order. Every entry 1..C exists and names a distinct op;
  every op whose ``counter`` write was reported accepted at n is entry n; C is at least
  the number of accepted increments and at most that plus the unknown ones.
- *Accepted tokens strictly increase per resource:* the tokens of entries 1..C.
- *No write reported refused was applied:* an op whose entry or counter write was
  refused (or whose fenced read was refused, so it wrote nothing) is not among entries
  1..C, and no entry holds the value of a refused entry write.
- *release() never said True after a successor was granted:* no release that returned
  True began after a grant of the same lock with a larger token had been returned.
- *The tokens issued per lock strictly increase:* a grant returned before another
  acquire began has the smaller token, and no token of a lock is issued twice.

Times are ``time.monotonic()`` stamps taken by the workers (one clock per machine): an
intent is stamped before it is sent and a result after it returned, so the time checks
can only miss a violation, never invent one.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CHECKS", "Outcome", "Report", "Violation", "check", "read_history"]

#: The properties checked, in the order reports print them.
CHECKS = (
    "lost increment",
    "double-counted increment",
    "accepted tokens not increasing",
    "refused write applied",
    "release True after successor",
    "issued tokens not increasing",
)


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str


@dataclass
class Outcome:
    """What the history says about one call of one op: ``ok``, ``refused``, ``unknown``
    (the service could not say, or the worker died before it could)."""

    n: int | None
    result: str


@dataclass
class Op:
    op: str
    store: str = ""
    resource: str = ""
    token: int = 0
    calls: dict[str, Outcome] = field(default_factory=dict)  # "read", "entry", "counter"


@dataclass
class Report:
    """Counts of what happened, and the violations found."""

    increments: Counter[str] = field(default_factory=Counter)  # accepted / refused / unknown
    grants: int = 0
    releases: Counter[str] = field(default_factory=Counter)  # True / False / unknown
    violations: list[Violation] = field(default_factory=list)

    def by_kind(self) -> Counter[str]:
        return Counter(v.kind for v in self.violations)


def read_history(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every record of the given JSON-lines files (a torn last line is skipped)."""
    records = []
    for path in paths:
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def check(records: list[dict[str, Any]], state: Mapping[str, Mapping[str, Any]]) -> Report:
    """Check one phase's records against the final ``state`` ({store: {resource:
    {"counter": str | None, "entries": {n: "op token"}}}})."""
    report = Report()
    ops = _ops(records, report)
    _check_resources(ops, state, report)
    _check_locks(records, report)
    return report


def _ops(records: list[dict[str, Any]], report: Report) -> dict[str, Op]:
    ops: dict[str, Op] = {}
    for r in records:
        if r["ev"] not in ("invoke", "ok", "refused", "unknown"):
            continue
        op = ops.setdefault(r["op"], Op(r["op"]))
        op.store, op.resource, op.token = r["store"], r["resource"], r["token"]
        call = "read" if r["call"] == "read" else ("counter" if r["key"] == "counter" else "entry")
        # An invoke with no outcome after it (the worker was killed) stays "unknown".
        op.calls[call] = Outcome(r.get("n"), "unknown" if r["ev"] == "invoke" else r["ev"])
    for op in ops.values():
        counter = op.calls.get("counter")
        if counter is not None:
            report.increments["accepted" if counter.result == "ok" else counter.result] += 1
        elif any(c.result == "refused" for c in op.calls.values()):
            report.increments["refused"] += 1
    return ops


def _entries(resource: Mapping[str, Any]) -> tuple[int, dict[int, tuple[str, int]]]:
    count = int(resource.get("counter") or 0)
    entries = {}
    for n, value in resource.get("entries", {}).items():
        op, token = value.split()
        entries[int(n)] = (op, int(token))
    return count, entries


def _check_resources(ops: dict[str, Op], state: Mapping[str, Mapping[str, Any]], report: Report) -> None:
    by_resource: dict[tuple[str, str], list[Op]] = defaultdict(list)
    for op in ops.values():
        by_resource[(op.store, op.resource)].append(op)
    for (store, resource), resource_ops in sorted(by_resource.items()):
        where = f"{store}/{resource}"
        count, entries = _entries(state.get(store, {}).get(resource, {}))
        kept: dict[str, int] = {}
        last_token = -1
        for n in range(1, count + 1):
            if n not in entries:
                report.violations.append(Violation("lost increment", f"{where}: counter {count} but no entry-{n}"))
                continue
            op_id, token = entries[n]
            if op_id in kept:
                report.violations.append(Violation(
                    "double-counted increment", f"{where}: op {op_id} is increment {kept[op_id]} and {n}"))
            kept[op_id] = n
            if token <= last_token:
                report.violations.append(Violation(
                    "accepted tokens not increasing", f"{where}: entry-{n} token {token} after {last_token}"))
            last_token = token
        accepted = unknown = 0
        for op in resource_ops:
            counter, entry = op.calls.get("counter"), op.calls.get("entry")
            if counter is not None and counter.result == "ok":
                accepted += 1
                if kept.get(op.op) != counter.n:
                    report.violations.append(Violation(
                        "lost increment", f"{where}: op {op.op} (token {op.token}) was accepted as increment "
                                          f"{counter.n}, which the store does not keep"))
            elif counter is not None and counter.result == "unknown":
                unknown += 1  # a worker that gave up or died at its entry write never sent the counter
            refused = [c for c in op.calls.values() if c.result == "refused"]
            if refused and op.op in kept:
                report.violations.append(Violation(
                    "refused write applied", f"{where}: op {op.op} was refused but is increment {kept[op.op]}"))
            if entry is not None and entry.result == "refused" and entry.n in entries \
                    and entries[entry.n][0] == op.op:
                report.violations.append(Violation(
                    "refused write applied", f"{where}: op {op.op}'s refused entry-{entry.n} is stored"))
        if count < accepted:
            report.violations.append(Violation(
                "lost increment", f"{where}: {accepted} increments accepted, counter is {count}"))
        if count > accepted + unknown:
            report.violations.append(Violation(
                "double-counted increment",
                f"{where}: counter is {count}, but only {accepted} accepted and {unknown} unknown"))


@dataclass(frozen=True)
class _Grant:
    lock: str
    token: int
    requested: float  # the acquire began
    returned: float  # the grant was returned


def _check_locks(records: list[dict[str, Any]], report: Report) -> None:
    requested: dict[str, float] = {}
    grants: dict[str, list[_Grant]] = defaultdict(list)
    release_began: dict[str, float] = {}
    releases: list[tuple[str, int, float, str]] = []
    for r in records:
        ev = r["ev"]
        if ev == "acquire":
            requested[r["op"]] = r["t"]
        elif ev == "acquired":
            grants[r["lock"]].append(_Grant(r["lock"], r["token"], requested.get(r["op"], r["t"]), r["t"]))
        elif ev == "release":
            release_began[r["op"]] = r["t"]
        elif ev == "released":
            report.releases[str(r["released"])] += 1
            if r["released"]:
                releases.append((r["lock"], r["token"], release_began.get(r["op"], r["t"]), r["op"]))
        elif ev == "release-unknown":
            report.releases["unknown"] += 1
    report.grants = sum(len(g) for g in grants.values())
    latest: dict[str, tuple[list[float], list[int]]] = {}
    for lock, issued in grants.items():
        for token, times in Counter(g.token for g in issued).items():
            if times > 1:
                report.violations.append(Violation("issued tokens not increasing",
                                                   f"lock {lock}: token {token} issued {times} times"))
        issued.sort(key=lambda g: g.returned)
        returned = [g.returned for g in issued]
        highest: list[int] = []
        for g in issued:
            highest.append(max(g.token, highest[-1]) if highest else g.token)
        latest[lock] = (returned, highest)
        for g in issued:
            before = bisect.bisect_left(returned, g.requested)
            if before and highest[before - 1] >= g.token:
                report.violations.append(Violation(
                    "issued tokens not increasing",
                    f"lock {lock}: token {g.token} granted after token {highest[before - 1]} had been"))
    for lock, token, began, op in releases:
        returned, highest = latest.get(lock, ([], []))
        before = bisect.bisect_left(returned, began)
        if before and highest[before - 1] > token:
            report.violations.append(Violation(
                "release True after successor",
                f"lock {lock}: op {op}'s release of token {token} said True after token "
                f"{highest[before - 1]} was granted"))
