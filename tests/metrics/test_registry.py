"""The metrics hook itself: names, label caps, reasons, a failing sink, the recording sink."""

from __future__ import annotations

import logging

import pytest

from fencing_coord.errors import BackendUnavailable, InvalidArgument, InvalidArgumentType, LockTimeout
from fencing_coord.observability import (
    FENCING_REJECT,
    GATE_DECISION,
    INSTRUMENTS,
    LOCK_ACQUIRE_SUCCESS,
    LOCK_LOST,
    OTHER,
    TOKEN_GAP,
    Instrument,
    Metrics,
    RecordingSink,
    current_metrics,
    failure_reason,
    render_samples,
    set_metrics,
)


def test_names_follow_the_seed_and_both_conventions() -> None:
    prometheus = {i.prometheus_name for i in INSTRUMENTS}
    assert prometheus == {
        "lock_acquire_success_total", "lock_acquire_failure_total", "lock_acquire_latency_seconds",
        "lock_hold_duration_seconds", "lock_lost_total", "lease_expired_while_executing_total",
        "fencing_reject_total", "token_gap", "critical_write_without_token_total", "gate_decision_total",
    }
    for instrument in INSTRUMENTS:
        # OpenTelemetry names carry neither the unit nor "_total"; the unit is a field.
        assert not instrument.name.endswith(("_total", "_seconds", "_ms")), instrument
        assert instrument.unit == "s" or instrument.unit.startswith("{"), instrument
        assert instrument.labels[0] in ("backend", "resource"), instrument


def test_names_beyond_the_cap_fold_into_other() -> None:
    sink = RecordingSink()
    metrics = Metrics(sink, max_names=2)
    for name in ("a", "b", "c", "d", "a"):
        metrics.gate_decision(name, "enforce", "refused", 1, 2)
    assert sink.count(FENCING_REJECT, resource="a") == 2
    assert sink.count(FENCING_REJECT, resource="b") == 1
    assert sink.count(FENCING_REJECT, resource=OTHER) == 2
    assert {labels["resource"] for _, labels, _ in sink.samples()} == {"a", "b", OTHER}
    # Lock names have a budget of their own.
    metrics.acquired("memory", "x", 0.1)
    assert sink.count(LOCK_ACQUIRE_SUCCESS, lock="x") == 1


def test_loss_reasons_become_short_bounded_labels() -> None:
    sink = RecordingSink()
    metrics = Metrics(sink, max_reasons=3)
    for reason in ("lease expired: etcd confirmed no keepalive for 2 s", "session expired", "lock key deleted",
                   "session presumed expired: no connection (4 s)", None):
        metrics.lost("etcd", "orders", reason)
    reasons = sorted(labels["reason"] for _, labels, _ in sink.samples())
    assert reasons == [OTHER, "lease_expired", "lock_key_deleted", "session_expired"]
    assert sink.count(LOCK_LOST, reason=OTHER) == 2  # the fourth reason and None ("unknown")


def test_failure_reasons() -> None:
    assert failure_reason(LockTimeout("x")) == "timeout"
    assert failure_reason(BackendUnavailable("x")) == "unavailable"
    assert failure_reason(InvalidArgument("closed")) == "closed"
    assert failure_reason(RuntimeError("x")) == "error"


def test_a_failing_sink_is_logged_once_and_never_fails_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def add(self, instrument: Instrument, amount: float, labels: tuple[str, ...]) -> None:
            raise RuntimeError("sink down")

        def observe(self, instrument: Instrument, value: float, labels: tuple[str, ...]) -> None:
            raise RuntimeError("sink down")

    metrics = Metrics(Broken())
    with caplog.at_level(logging.DEBUG, logger="fencing_coord.observability"):
        for _ in range(3):
            metrics.gate_decision("orders", "enforce", "refused", 1, 2)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert {r.getMessage().split(" on ")[1].split(";")[0] for r in errors} == {"gate_decision", "token_gap",
                                                                               "fencing_reject"}
    assert len(errors) == 3  # once per instrument, then DEBUG


def test_set_metrics_returns_the_previous_one_and_checks_its_argument() -> None:
    metrics = Metrics(RecordingSink())
    previous = set_metrics(metrics)
    try:
        assert current_metrics() is metrics
        with pytest.raises(InvalidArgumentType, match="expected a Metrics or None"):
            set_metrics(RecordingSink())  # type: ignore[arg-type]
    finally:
        assert set_metrics(previous) is metrics


def test_metrics_arguments_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="max_names must be >= 0"):
        Metrics(RecordingSink(), max_names=-1)
    with pytest.raises(InvalidArgumentType, match="max_reasons must be an int"):
        Metrics(RecordingSink(), max_reasons=1.5)  # type: ignore[arg-type]


def test_recording_sink_samples_and_rendering() -> None:
    sink = RecordingSink()
    metrics = Metrics(sink)
    metrics.gate_decision("ledger", "enforce", "admitted", 9, 8)
    metrics.gate_decision("ledger", "enforce", "refused", 7, 9)
    assert sink.observations(TOKEN_GAP, resource="ledger") == [1, -2]
    assert sink.count(GATE_DECISION, decision="refused") == 1
    lines = render_samples(sink.samples())
    assert 'fencing_reject_total{resource="ledger"} 1' in lines
    assert 'gate_decision_total{decision="admitted",mode="enforce",resource="ledger"} 1' in lines
    assert 'token_gap{resource="ledger"} count=2 sum=-1 min=-2 max=1' in lines
