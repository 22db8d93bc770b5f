"""Runs tooz's own lock and election tests (``tooz/tests/test_coordination.py::TestAPI``,
``-k "lock or elect or leader"``) against a tooz URL, in a subprocess, and reports the
outcome of every test."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: The only skips our driver may cause: capabilities the README says it lacks.
DOCUMENTED_MISSING = ("fencing-coord has no shared locks", "break_ is not supported")


@dataclass
class SuiteResult:
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def tooz_test_module() -> Path:
    """tooz's test module, from the installed package (the wheel ships its tests)."""
    try:
        import tooz.tests.test_coordination as module
    except ImportError as exc:
        pytest.skip(f"tooz's tests cannot be imported ({exc}); pip install 'fencing-coord[dev]'")
    assert module.__file__ is not None
    return Path(module.__file__)


def run_tooz_suite(url: str, workdir: Path, *, timeout: float = 900) -> SuiteResult:
    """Run the selected TestAPI tests with ``TOOZ_TEST_URL=url``; every test's outcome."""
    module = tooz_test_module()
    report = workdir / "tooz-junit.xml"
    (workdir / "pytest.ini").write_text("[pytest]\n")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", f"{module}::TestAPI", "-k", "lock or elect or leader", "-q",
         "-p", "no:cacheprovider", "-c", str(workdir / "pytest.ini"), "--rootdir", str(workdir),
         f"--junitxml={report}"],
        cwd=workdir, env={**os.environ, "TOOZ_TEST_URL": url}, capture_output=True, text=True, timeout=timeout,
    )
    assert report.exists(), f"tooz's tests did not run:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    result = SuiteResult()
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "?")
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            result.failed[name] = (problem.get("message") or "") + (problem.text or "")[-1500:]
        elif skipped is not None:
            result.skipped[name] = skipped.get("message") or ""
        else:
            result.passed.append(name)
    assert result.passed or result.failed, f"no test ran:\n{completed.stdout[-3000:]}"
    return result


def assert_as_good_as_toozs_own(result: SuiteResult) -> None:
    """No failure, and skips only for a capability the README documents as missing."""
    assert result.failed == {}, "\n\n".join(f"{name}: {text}" for name, text in result.failed.items())
    undocumented = {name: why for name, why in result.skipped.items()
                    if not any(reason in why for reason in DOCUMENTED_MISSING)}
    assert undocumented == {}
    assert len(result.passed) >= 25, result.passed
