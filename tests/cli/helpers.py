"""Running ``fencing-coord`` as a separate process, and waiting on what it leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

#: The command line, run from this interpreter (the installed console script calls the
#: same ``fencing_coord.cli:console_main``).
CLI = [sys.executable, "-m", "fencing_coord.cli"]


def cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``fencing-coord ARGS...`` to completion; stdout/stderr captured as text."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    """Start ``fencing-coord ARGS...`` in the background; stdout/stderr piped as text."""
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    """Return the contents of ``path`` once it exists and is complete (written to a
    temporary name and renamed by the writer); AssertionError after ``timeout`` s.

    A bounded poll: the file is written by another process, nothing to await."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)
    return path.read_text()
