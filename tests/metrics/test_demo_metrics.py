"""The demo ends with the run's metrics: each process reports what it recorded, and the
report adds them up per backend."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest

from fencing_coord.demo import Outcome, print_metrics
from fencing_coord.demo.actor import child_main
from fencing_coord.observability import current_metrics


def test_a_demo_process_reports_its_metrics_last(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = current_metrics()
    code = child_main(["successor", "--url", f"memory://demo-{uuid.uuid4().hex[:8]}", "--lock", "ledger",
                       "--namespace", "demo", "--db", str(tmp_path / "demo.db"), "--resource", "fenced"])
    assert code == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["event"] for r in reports][-2:] == ["released", "metrics"]
    samples = {(name, tuple(sorted(labels.items()))): values for name, labels, values in reports[-1]["samples"]}
    lock = (("backend", "memory"), ("lock", "ledger"))
    assert samples[("lock_acquire_success_total", lock)] == [1]
    assert len(samples[("lock_hold_duration_seconds", lock)]) == 1
    decision = (("decision", "admitted"), ("mode", "enforce"), ("resource", "ledger"))
    assert samples[("gate_decision_total", decision)] == [1]
    assert current_metrics() is before  # the process-wide metrics are put back


def test_the_report_adds_up_the_runs_per_backend() -> None:
    holder = [["fencing_reject_total", {"resource": "ledger"}, [1]],
              ["lock_acquire_success_total", {"backend": "etcd", "lock": "ledger"}, [1]],
              ["token_gap", {"resource": "ledger"}, [-3]]]
    successor = [["lock_acquire_success_total", {"backend": "etcd", "lock": "ledger"}, [1]],
                 ["token_gap", {"resource": "ledger"}, [3]]]
    outcomes = [Outcome("etcd", "etcd://x", True, metrics=holder + successor),
                Outcome("etcd", "etcd://x", False, metrics=successor),
                Outcome("zookeeper", "zk://x", True)]
    out = io.StringIO()
    print_metrics(outcomes, out)
    text = out.getvalue()
    assert 'lock_acquire_success_total{backend="etcd",lock="ledger"} 3' in text
    assert 'fencing_reject_total{resource="ledger"} 1' in text
    assert 'token_gap{resource="ledger"} count=3 sum=3 min=-3 max=3' in text
    assert "metrics of the zookeeper runs" in text
    assert "(none recorded)" in text
