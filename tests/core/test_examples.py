"""The README's examples run as written."""

from __future__ import annotations

import runpy
from pathlib import Path

import fencing_coord as fc

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_scheduler_example_leads_and_writes_with_its_term_token(tmp_path: Path) -> None:
    run_scheduler = runpy.run_path(str(EXAMPLES / "scheduler.py"))["run_scheduler"]
    db = str(tmp_path / "scheduler.db")
    first = run_scheduler("memory://examples", db=db, runs=2)
    second = run_scheduler("memory://examples", db=db, runs=2)
    assert len(first) == 2
    assert len(second) == 2
    assert second[0] > first[0], "a later term must carry a larger token"
    resource = fc.FencedResource(fc.stores.SQLiteStore(db))
    assert resource.read("scheduler", "last-run") == f"run 1 by term {second[0]}".encode()
    assert resource.highest_token("scheduler") == second[0]


def test_aio_worker_example_does_every_job_once(tmp_path: Path) -> None:
    import asyncio

    run_jobs = runpy.run_path(str(EXAMPLES / "aio_worker.py"))["run_jobs"]
    names = [f"j{i}" for i in range(6)]
    results = asyncio.run(run_jobs("memory://aio-example", str(tmp_path / "jobs.db"), names))
    assert results == {name: f"result of {name}".encode() for name in names}
