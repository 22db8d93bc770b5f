"""A short fault campaign per backend (CI's share of the long one the README describes):
the fenced phase must show no violation (but those of a known bug listed below) and the
unfenced control must lose updates."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fencing_coord.errors import ConfigurationError
from fencing_coord.servers.zookeeper import classpath
from fencing_coord.testing.netlab import unavailable_reason

pytestmark = pytest.mark.slow

#: The fenced phase, and the control phase, in seconds: 30 s of faults per backend.
FENCED, CONTROL = 20, 10

#: Violations of known bugs not fixed yet, which a short run may or may not hit; each
#: needs a deterministic test. (ZooKeeper's release() saying True when it could not reach
#: ZooKeeper was one: fixed, tests/partitions/test_cut_off.py.)
KNOWN_ISSUES: dict[str, set[str]] = {}


def require(backend: str) -> None:
    if backend == "etcd" and shutil.which("etcd") is None:
        pytest.skip("the etcd binary is not on PATH")
    if backend == "zookeeper":
        try:
            classpath()
        except ConfigurationError as exc:
            pytest.skip(str(exc))


@pytest.mark.parametrize("backend", [pytest.param("etcd", marks=pytest.mark.etcd),
                                     pytest.param("zookeeper", marks=pytest.mark.zookeeper)])
def test_short_campaign_finds_no_violation_and_the_control_loses_updates(backend: str, tmp_path: Path) -> None:
    require(backend)
    # A control that happened to lose nothing makes a run inconclusive, not failed: the
    # faults are random in their timing. One more run (another seed) settles it, still
    # within 60 s of faults per backend.
    for seed in (7, 8):
        run_dir = tmp_path / f"run-{seed}"
        argv = [sys.executable, "-m", "fencing_coord.testing.chaos", "--backend", backend, "--seconds", str(FENCED),
                "--control-seconds", str(CONTROL), "--seed", str(seed), "--dir", str(run_dir)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
        output = done.stdout[-4000:] + done.stderr[-4000:]
        report_path = run_dir / "report.json"
        assert report_path.exists(), output  # the campaign crashed before it could report
        report = json.loads(report_path.read_text())
        if report["control_violations"].get("lost increment", 0) > 0:
            break
    found = {v["kind"] for v in report["violations"]}
    assert found <= KNOWN_ISSUES.get(backend, set()), output
    assert report["crashes"] == [], output
    assert report["control_violations"].get("lost increment", 0) > 0, output
    assert done.returncode == (1 if found else 0), output
    assert "fault rounds (fenced phase)" in done.stdout
    if unavailable_reason() is None:  # with the network lab, partitions are among the faults
        assert "partition-leader" in done.stdout or "partition-worker" in done.stdout
