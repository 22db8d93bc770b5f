"""Metrics of locks and of the gate, through a hook with no dependency.

The core reports what happens (a lock granted, a write refused) to a :class:`Metrics`
object, which turns each event into updates of the instruments below and hands them to
a :class:`MetricsSink`: an adapter for prometheus_client
(:mod:`fencing_coord.metrics.prometheus`, extra ``[prometheus]``), for OpenTelemetry
(:mod:`fencing_coord.metrics.otel`, extra ``[otel]``), or :class:`RecordingSink`, which
keeps everything in memory. Nothing is measured until a sink is installed::

    from fencing_coord.observability import Metrics, set_metrics
    from fencing_coord.metrics.prometheus import PrometheusSink
    set_metrics(Metrics(PrometheusSink()))       # process-wide; or per object:
    backend.metrics = Metrics(sink)              # resource = FencedResource(store, metrics=...)

With no sink installed every event costs one ``is None`` test.

Names follow both conventions at once: an instrument's :attr:`Instrument.name` is its
OpenTelemetry name (no unit, no ``_total``; the unit is a separate field), and
:attr:`Instrument.prometheus_name` adds what Prometheus wants (``_seconds`` for a
duration, ``_total`` for a counter), which is also what OpenTelemetry's own Prometheus
exporter produces from the same name and unit. Durations are in seconds.

Labels are ``backend`` and ``lock`` (locks) or ``resource`` (the gate), plus ``reason``,
``mode`` and ``decision`` where listed. Lock and resource names come from the
application, so their number is capped (:class:`Metrics` ``max_names``): past the cap,
new names are counted under the label value ``"_other"`` instead of creating series.
Loss reasons are cut to their first words (``"lease expired"`` -> ``lease_expired``) and
capped the same way.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from .errors import BackendUnavailable, InvalidArgument, InvalidArgumentType, LockTimeout

if TYPE_CHECKING:
    from .grant import Grant

__all__ = [
    "CRITICAL_WRITE_WITHOUT_TOKEN",
    "FENCING_REJECT",
    "GATE_DECISION",
    "INSTRUMENTS",
    "LEASE_EXPIRED_WHILE_EXECUTING",
    "LOCK_ACQUIRE_FAILURE",
    "LOCK_ACQUIRE_LATENCY",
    "LOCK_ACQUIRE_SUCCESS",
    "LOCK_HOLD_DURATION",
    "LOCK_LOST",
    "OTHER",
    "TOKEN_GAP",
    "Instrument",
    "Kind",
    "Metrics",
    "MetricsSink",
    "RecordingSink",
    "current_metrics",
    "failure_reason",
    "observe_grant",
    "render_samples",
    "set_metrics",
]

_log = logging.getLogger(__name__)

#: The label value that names beyond the cap are folded into.
OTHER = "_other"


class Kind(Enum):
    """How an instrument aggregates what it is given."""

    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a dict key on every update
class Instrument:
    """One metric: its OpenTelemetry ``name``, ``kind``, UCUM ``unit`` (``"s"``, or an
    annotation such as ``"{token}"``), ``description``, label names in the order sinks
    receive label values, and for a histogram its bucket boundaries and whether its
    observations can be negative (``signed``; OpenTelemetry histograms take non-negative
    values only, so its adapter records those differently)."""

    name: str
    kind: Kind
    unit: str
    description: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    signed: bool = False

    @property
    def prometheus_name(self) -> str:
        """``lock_acquire_latency_seconds``, ``fencing_reject_total``, ``token_gap``."""
        name = self.name + ("_seconds" if self.unit == "s" else "")
        return name + ("_total" if self.kind is Kind.COUNTER else "")


#: Seconds: from a millisecond (an uncontended local grant) to minutes (a long queue).
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Incoming token minus the highest admitted: negative is stale, 0 the same holder again,
#: positive a new holder (etcd revisions can jump by thousands between grants).
TOKEN_GAP_BUCKETS = (-1e6, -1000.0, -100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0, 1000.0, 1e6)

LOCK_ACQUIRE_SUCCESS = Instrument(
    "lock_acquire_success", Kind.COUNTER, "{acquisition}", "Locks granted (reentrant acquisitions not counted)",
    ("backend", "lock"))
LOCK_ACQUIRE_FAILURE = Instrument(
    "lock_acquire_failure", Kind.COUNTER, "{acquisition}",
    "Acquisitions that ended without a grant, by reason: timeout, busy (try_acquire), unavailable, closed, error",
    ("backend", "lock", "reason"))
LOCK_ACQUIRE_LATENCY = Instrument(
    "lock_acquire_latency", Kind.HISTOGRAM, "s", "Time from the acquire call to the grant (granted acquisitions)",
    ("backend", "lock"), DURATION_BUCKETS)
LOCK_HOLD_DURATION = Instrument(
    "lock_hold_duration", Kind.HISTOGRAM, "s", "Time from the grant to its release", ("backend", "lock"),
    DURATION_BUCKETS)
LOCK_LOST = Instrument(
    "lock_lost", Kind.COUNTER, "{grant}", "Grants lost (lease or session gone), by reason",
    ("backend", "lock", "reason"))
LEASE_EXPIRED_WHILE_EXECUTING = Instrument(
    "lease_expired_while_executing", Kind.COUNTER, "{grant}",
    "Grants found lost when their holder released them (the end of a lock() block): the holder was still working",
    ("backend", "lock"))
FENCING_REJECT = Instrument(
    "fencing_reject", Kind.COUNTER, "{operation}", "Writes and fenced reads refused for a stale token",
    ("resource",))
TOKEN_GAP = Instrument(
    "token_gap", Kind.HISTOGRAM, "{token}", "Incoming token minus the highest admitted one (negative: stale)",
    ("resource",), TOKEN_GAP_BUCKETS, signed=True)
CRITICAL_WRITE_WITHOUT_TOKEN = Instrument(
    "critical_write_without_token", Kind.COUNTER, "{write}", "Writes to a gated resource that carried no token",
    ("resource",))
GATE_DECISION = Instrument(
    "gate_decision", Kind.COUNTER, "{decision}",
    "Gate decisions by mode and decision (admitted, refused, would_refuse, unchecked, no_token)",
    ("resource", "mode", "decision"))

INSTRUMENTS = (
    LOCK_ACQUIRE_SUCCESS, LOCK_ACQUIRE_FAILURE, LOCK_ACQUIRE_LATENCY, LOCK_HOLD_DURATION, LOCK_LOST,
    LEASE_EXPIRED_WHILE_EXECUTING, FENCING_REJECT, TOKEN_GAP, CRITICAL_WRITE_WITHOUT_TOKEN, GATE_DECISION,
)


class MetricsSink(Protocol):
    """Where instrument updates go. ``labels`` are the values of ``instrument.labels``,
    in that order. Called from any thread; must not block for long."""

    def add(self, instrument: Instrument, amount: float, labels: tuple[str, ...]) -> None:
        """Add ``amount`` (>= 0) to a counter."""

    def observe(self, instrument: Instrument, value: float, labels: tuple[str, ...]) -> None:
        """Record one observation of a histogram."""


class Metrics:
    """Turns the core's events into instrument updates for ``sink``.

    ``max_names``: how many distinct lock names and (separately) resource names get a
    series of their own; later names are counted as :data:`OTHER`. ``max_reasons``: the
    same for loss reasons. A sink that raises is logged (once per instrument) and never
    fails the lock or write being measured. Thread-safe.
    """

    def __init__(self, sink: MetricsSink, *, max_names: int = 100, max_reasons: int = 16) -> None:
        for what, value in (("max_names", max_names), ("max_reasons", max_reasons)):
            if type(value) is not int:
                raise InvalidArgumentType(f"{what} must be an int, not {type(value).__name__}")
            if value < 0:
                raise InvalidArgument(f"{what} must be >= 0, got {value}")
        self.sink = sink
        self.max_names = max_names
        self.max_reasons = max_reasons
        self._mutex = threading.Lock()
        self._seen: dict[str, set[str]] = {"lock": set(), "resource": set(), "reason": set()}
        self._failed: set[str] = set()

    def __repr__(self) -> str:
        return f"Metrics({self.sink!r}, max_names={self.max_names})"

    # -- lock events --------------------------------------------------------------------

    def acquired(self, backend: str, lock: str, seconds: float) -> None:
        """A lock was granted ``seconds`` after its acquire call."""
        labels = (backend, self.fold("lock", lock))
        self._add(LOCK_ACQUIRE_SUCCESS, labels)
        self._observe(LOCK_ACQUIRE_LATENCY, seconds, labels)

    def acquire_failed(self, backend: str, lock: str, reason: str) -> None:
        """An acquisition ended without a grant (``reason`` from :func:`failure_reason`)."""
        self._add(LOCK_ACQUIRE_FAILURE, (backend, self.fold("lock", lock), reason))

    def released(self, backend: str, lock: str, held_seconds: float, lost: bool) -> None:
        """A grant was given back after ``held_seconds``; ``lost``: it turned out to have
        been lost before (the holder was still working under it)."""
        labels = (backend, self.fold("lock", lock))
        self._observe(LOCK_HOLD_DURATION, held_seconds, labels)
        if lost:
            self._add(LEASE_EXPIRED_WHILE_EXECUTING, labels)

    def lost(self, backend: str, lock: str, reason: str | None) -> None:
        """A grant was lost; ``reason`` is the backend's words for why."""
        self._add(LOCK_LOST, (backend, self.fold("lock", lock), self.fold("reason", _reason_label(reason))))

    # -- gate events --------------------------------------------------------------------

    def gate_decision(self, resource: str, mode: str, decision: str, token: int | None, highest: int | None) -> None:
        """The gate decided a write or fenced read of ``resource`` carrying ``token``
        (None: no token) against the highest admitted token ``highest`` (None: none or
        not read). A ``"refused"`` decision on a token is a fencing reject."""
        name = self.fold("resource", resource)
        self._add(GATE_DECISION, (name, mode, decision))
        if token is not None:
            if highest is not None:
                self._observe(TOKEN_GAP, token - highest, (name,))
            if decision == "refused":
                self._add(FENCING_REJECT, (name,))

    def write_without_token(self, resource: str) -> None:
        """A write reached the gate with no token (applied or not)."""
        self._add(CRITICAL_WRITE_WITHOUT_TOKEN, (self.fold("resource", resource),))

    # -- helpers --------------------------------------------------------------------------

    def fold(self, label: str, value: str) -> str:
        """``value`` itself while fewer than the cap of distinct values of ``label``
        (``"lock"``, ``"resource"``, ``"reason"``) have been seen, else :data:`OTHER`."""
        seen = self._seen[label]
        if value in seen:  # the usual case: a set lookup, no lock
            return value
        cap = self.max_reasons if label == "reason" else self.max_names
        with self._mutex:
            if value in seen:
                return value
            if len(seen) >= cap:
                return OTHER
            seen.add(value)
            return value

    def _add(self, instrument: Instrument, labels: tuple[str, ...]) -> None:
        try:
            self.sink.add(instrument, 1, labels)
        except Exception:
            self._sink_failed(instrument)

    def _observe(self, instrument: Instrument, value: float, labels: tuple[str, ...]) -> None:
        try:
            self.sink.observe(instrument, value, labels)
        except Exception:
            self._sink_failed(instrument)

    def _sink_failed(self, instrument: Instrument) -> None:
        if instrument.name in self._failed:
            _log.debug("metrics sink %r failed again on %s", self.sink, instrument.name, exc_info=True)
            return
        self._failed.add(instrument.name)
        _log.exception("metrics sink %r failed on %s; further failures are logged at DEBUG", self.sink,
                       instrument.name)


_REASON_HEAD = re.compile(r"[:(]")
_NOT_LABEL = re.compile(r"[^a-z0-9]+")


def _reason_label(reason: str | None) -> str:
    """``"lease expired: etcd confirmed ..."`` -> ``lease_expired``: the words before any
    detail, as a label value (details carry numbers that would make every loss a series)."""
    if not reason:
        return "unknown"
    head = _REASON_HEAD.split(reason, 1)[0]
    return _NOT_LABEL.sub("_", head.lower()).strip("_")[:40] or "unknown"


def failure_reason(exc: BaseException) -> str:
    """The ``reason`` label of an acquisition that raised ``exc``."""
    if isinstance(exc, LockTimeout):
        return "timeout"
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    if isinstance(exc, InvalidArgument):  # arguments are checked before: this is "closed"
        return "closed"
    return "error"


# -- the process-wide default -----------------------------------------------------------------

_current: Metrics | None = None


def set_metrics(metrics: Metrics | None) -> Metrics | None:
    """Install ``metrics`` for every backend and resource without one of their own
    (None uninstalls); returns the one installed before."""
    global _current
    if metrics is not None and not isinstance(metrics, Metrics):
        raise InvalidArgumentType(f"expected a Metrics or None, not {type(metrics).__name__}")
    previous, _current = _current, metrics
    return previous


def current_metrics() -> Metrics | None:
    """The process-wide :class:`Metrics`, or None."""
    return _current


# -- a sink in memory ---------------------------------------------------------------------------


class RecordingSink:
    """Keeps every count and observation in memory: for tests, the demo and quick looks
    without a metrics library. Thread-safe."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._counts: dict[tuple[Instrument, tuple[str, ...]], float] = {}
        self._observations: dict[tuple[Instrument, tuple[str, ...]], list[float]] = {}

    def __repr__(self) -> str:
        return f"RecordingSink({len(self._counts) + len(self._observations)} series)"

    def add(self, instrument: Instrument, amount: float, labels: tuple[str, ...]) -> None:
        with self._mutex:
            key = (instrument, labels)
            self._counts[key] = self._counts.get(key, 0.0) + amount

    def observe(self, instrument: Instrument, value: float, labels: tuple[str, ...]) -> None:
        with self._mutex:
            self._observations.setdefault((instrument, labels), []).append(value)

    def count(self, instrument: Instrument, **labels: str) -> float:
        """The sum of ``instrument``'s counts over the series matching ``labels``."""
        with self._mutex:
            return sum(v for (i, values), v in self._counts.items() if i is instrument
                       and _matches(i, values, labels))

    def observations(self, instrument: Instrument, **labels: str) -> list[float]:
        """Every value ``instrument`` observed in the series matching ``labels``."""
        with self._mutex:
            return [v for (i, values), vs in self._observations.items() if i is instrument
                    and _matches(i, values, labels) for v in vs]

    def samples(self) -> list[tuple[str, dict[str, str], list[float]]]:
        """Every series as ``(prometheus name, labels, values)``: one value (the count)
        for a counter, the observations for a histogram. JSON-friendly; sorted."""
        with self._mutex:
            counts = [(i, values, [v]) for (i, values), v in self._counts.items()]
            observed = [(i, values, list(vs)) for (i, values), vs in self._observations.items()]
        rows = [(i.prometheus_name, dict(zip(i.labels, values, strict=True)), vs) for i, values, vs in
                counts + observed]
        return sorted(rows, key=lambda row: (row[0], sorted(row[1].items())))


def _matches(instrument: Instrument, values: tuple[str, ...], wanted: dict[str, str]) -> bool:
    have = dict(zip(instrument.labels, values, strict=True))
    return all(have.get(k) == v for k, v in wanted.items())


def render_samples(samples: Iterable[tuple[str, dict[str, str], list[float]]]) -> list[str]:
    """One line per series, Prometheus-style: counters as their value, histograms as
    ``count=N sum=S min=A max=B``."""
    lines = []
    for name, labels, values in samples:
        shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        series = f"{name}{{{shown}}}" if shown else name
        if name.endswith("_total"):
            lines.append(f"{series} {_number(sum(values))}")
        else:
            lines.append(f"{series} count={len(values)} sum={_number(sum(values))} min={_number(min(values))}"
                         f" max={_number(max(values))}")
    return lines


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def observe_grant(metrics: Metrics, label: str, grant: Grant, started: float) -> None:
    """Count a grant made (its acquire latency since ``started``), start its hold time,
    and count its loss if it is ever lost."""
    now = time.monotonic()
    grant._held_since = now
    metrics.acquired(label, grant.name, now - started)
    grant.on_lost(lambda lost: metrics.lost(label, lost.name, lost.lost_reason))
