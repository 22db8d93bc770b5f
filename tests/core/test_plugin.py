"""The conformance plugin as a user meets it (issue 12, item 9): a run that tests
nothing fails, naming what to set, and the README's template works as pasted. Each case
is a real pytest run in a subprocess, in a directory of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from fencing_coord.testing.expiry import LeaseExpiryConformance

README = Path(__file__).resolve().parents[2] / "README.md"

BARE = """
from fencing_coord.testing import BackendFixtures, LockBackendConformance

class TestMine(LockBackendConformance, BackendFixtures):
    pass
"""


def _pytest(where: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    (where / "test_mine.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENCING_COORD")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--timeout=60", "test_mine.py", *args],
        cwd=where, env=env, capture_output=True, text=True, timeout=600, check=False,
    )


def _readme_template() -> str:
    """The first Python block of the README's "Conformance suite" section, verbatim."""
    section = README.read_text().split("## Conformance suite", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_no_url_anywhere_fails_naming_the_option_and_the_variable(tmp_path: Path) -> None:
    run = _pytest(tmp_path, BARE)
    assert run.returncode == 1, run.stdout
    assert "passed" not in run.stdout.splitlines()[-1]
    assert "--fencing-coord-url" in run.stdout
    assert "$FENCING_COORD_TEST_URL" in run.stdout


def test_the_option_is_enough(tmp_path: Path) -> None:
    run = _pytest(tmp_path, BARE, "--fencing-coord-url", f"memory://plugin-{uuid.uuid4().hex[:8]}")
    assert run.returncode == 0, run.stdout
    assert "does not override expire()" in _skip_reasons(run.stdout)


def test_the_readme_template_works_as_pasted(tmp_path: Path) -> None:
    """Its ``expire`` has the body ``...``: the expiry tests are skipped with the reason,
    not run against a session that never expires (each waited 30 s, then failed)."""
    template = _readme_template()
    assert "def expire(self, backend):" in template
    assert '"mine://127.0.0.1:9999"' in template
    source = template.replace("mine://127.0.0.1:9999", f"memory://readme-{uuid.uuid4().hex[:8]}")
    run = _pytest(tmp_path, source)
    assert run.returncode == 0, run.stdout
    reasons = _skip_reasons(run.stdout)
    assert "TestMyBackend.expire() has an empty body" in reasons
    # Every expiry test is skipped for that reason; so is the paused-holder test, since
    # memory:// serves one process only.
    expiry_tests = sum(name.startswith("test_") for name in dir(LeaseExpiryConformance))
    assert reasons.count("has an empty body") == expiry_tests, reasons
    assert re.search(rf"\b{expiry_tests + 1} skipped\b", run.stdout.splitlines()[-1]), run.stdout


def _skip_reasons(output: str) -> str:
    return "\n".join(line for line in output.splitlines() if line.startswith("SKIPPED"))
