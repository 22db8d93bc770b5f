"""OpenTelemetry adapter: the pause scenario read through the SDK's InMemoryMetricReader."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from fencing_coord.errors import ConfigurationError
from fencing_coord.gate import FencedResource
from fencing_coord.metrics.otel import METER_NAME, OpenTelemetrySink
from fencing_coord.observability import Metrics, set_metrics
from fencing_coord.stores import MemoryStore

from .pause import RESOURCE, run_pause_scenario

Points = dict[str, list[tuple[dict[str, Any], Any]]]


def collect(reader: InMemoryMetricReader) -> tuple[Points, dict[str, str]]:
    """Data points by instrument name, and each instrument's unit."""
    points: Points = {}
    units: dict[str, str] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            assert scope.scope.name == METER_NAME
            for metric in scope.metrics:
                units[metric.name] = metric.unit or ""
                points[metric.name] = [(dict(p.attributes or {}), p) for p in metric.data.data_points]
    return points, units


def point(points: Points, name: str, **attributes: str) -> Any:
    matching = [p for attrs, p in points.get(name, []) if attrs == attributes]
    assert len(matching) == 1, (name, attributes, points.get(name))
    return matching[0]


def test_the_pause_scenario_through_the_in_memory_reader() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    resource = FencedResource(MemoryStore(), metrics=Metrics(OpenTelemetrySink(provider)))
    previous = set_metrics(Metrics(OpenTelemetrySink(provider)))  # for the backends
    seen: dict[str, tuple[Points, dict[str, str]]] = {}
    try:
        run = run_pause_scenario(resource, lambda step: seen.update({step: collect(reader)}))
    finally:
        set_metrics(previous)
        provider.shutdown()
    assert not run.late.accepted
    lock = {"backend": "memory", "lock": RESOURCE}

    late, _ = seen["late write"]
    assert point(late, "fencing_reject", resource=RESOURCE).value == 1
    assert point(late, "gate_decision", resource=RESOURCE, mode="enforce", decision="refused").value == 1
    assert point(late, "gate_decision", resource=RESOURCE, mode="enforce", decision="admitted").value == 2
    # OpenTelemetry histograms are non-negative: the stale gap is its magnitude, signed by attribute.
    stale = point(late, "token_gap", resource=RESOURCE, sign="negative")
    assert (stale.count, stale.sum) == (1, run.successor_token - run.holder_token)
    assert point(late, "token_gap", resource=RESOURCE, sign="positive").count == 1

    done, units = seen["holder left lock()"]
    assert point(done, "lock_acquire_success", **lock).value == 2
    assert point(done, "lock_acquire_latency", **lock).count == 2
    assert point(done, "lock_hold_duration", **lock).count == 2
    assert point(done, "lock_lost", reason="lease_expired", **lock).value == 1
    assert point(done, "lease_expired_while_executing", **lock).value == 1
    assert units["lock_acquire_latency"] == "s"
    assert units["token_gap"] == "{token}"
    assert "critical_write_without_token" not in done or not done["critical_write_without_token"]



def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import raises ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'fencing-coord\[otel\]'"):
        OpenTelemetrySink()
