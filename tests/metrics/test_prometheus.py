"""prometheus_client adapter: a real HTTP exporter, scraped over HTTP while the pause
scenario runs; the numbers match what happened."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from fencing_coord.errors import ConfigurationError
from fencing_coord.gate import FencedResource
from fencing_coord.metrics.prometheus import PrometheusSink
from fencing_coord.observability import Metrics, set_metrics
from fencing_coord.stores import MemoryStore

from .pause import RESOURCE, run_pause_scenario

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def exporter() -> Iterator[tuple[CollectorRegistry, str]]:
    """A registry served over HTTP on a free port (port 0: the kernel picks one)."""
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield registry, f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_scraped_over_http_during_the_pause_scenario(exporter: tuple[CollectorRegistry, str]) -> None:
    registry, url = exporter
    previous = set_metrics(Metrics(PrometheusSink(registry)))
    scrapes: dict[str, Samples] = {}
    try:
        run = run_pause_scenario(FencedResource(MemoryStore()), lambda step: scrapes.update({step: scrape(url)}))
    finally:
        set_metrics(previous)
    assert not run.late.accepted
    assert run.holder_token < run.successor_token
    lock = {"backend": "memory", "lock": RESOURCE}
    gap = "token_gap_bucket"

    first = scrapes["holder wrote"]
    assert value(first, "lock_acquire_success_total", **lock) == 1
    assert value(first, "gate_decision_total", resource=RESOURCE, mode="enforce", decision="admitted") == 1
    assert value(first, "token_gap_count", resource=RESOURCE) == 0  # nothing admitted before: no gap
    assert value(first, "fencing_reject_total", resource=RESOURCE) == 0

    taken = scrapes["successor wrote"]
    assert value(taken, "lock_acquire_success_total", **lock) == 2
    assert value(taken, "lock_acquire_latency_seconds_count", **lock) == 2
    assert value(taken, "token_gap_count", resource=RESOURCE) == 1
    assert value(taken, gap, resource=RESOURCE, le="0.0") == 0  # the successor's gap is positive
    assert value(taken, "fencing_reject_total", resource=RESOURCE) == 0

    late = scrapes["late write"]
    assert value(late, "fencing_reject_total", resource=RESOURCE) == 1
    assert value(late, "gate_decision_total", resource=RESOURCE, mode="enforce", decision="refused") == 1
    assert value(late, "token_gap_count", resource=RESOURCE) == 2
    stale_gap = run.holder_token - run.successor_token
    assert stale_gap < 0
    assert value(late, gap, resource=RESOURCE, le="-1.0") == 1  # the one negative observation
    assert value(late, gap, resource=RESOURCE, le="-10.0") == 0
    assert value(late, "critical_write_without_token_total", resource=RESOURCE) == 0

    done = scrapes["holder left lock()"]
    assert value(done, "lock_lost_total", reason="lease_expired", **lock) == 1
    assert value(done, "lease_expired_while_executing_total", **lock) == 1
    assert value(done, "lock_hold_duration_seconds_count", **lock) == 2
    assert value(done, "fencing_reject_total", resource=RESOURCE) == 1


def test_one_sink_per_registry(exporter: tuple[CollectorRegistry, str]) -> None:
    registry, _ = exporter
    sink = PrometheusSink(registry)
    with pytest.raises(ConfigurationError, match="cannot register fencing-coord's metrics"):
        PrometheusSink(registry)
    sink.close()
    PrometheusSink(registry, namespace="app").close()
    PrometheusSink(registry).close()  # closing unregistered the names


def test_without_the_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'fencing-coord\[prometheus\]'"):
        PrometheusSink()
