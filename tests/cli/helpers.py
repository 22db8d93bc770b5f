"""Running ``fencing-coord`` as a separate process, and waiting on what it leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

#: The command line, run from this interpreter (the installed console script calls the
#: same ``fencing_coord.cli:console_main``).
CLI = [sys.executable, "-m", "fencing_coord.cli"]


#: Sets SIGINT, SIGTERM and SIGHUP to their default action, or ignores those whose
#: numbers argv[1] lists, then becomes argv[2:] (exec). A child inherits ignored signals:
#: a test runner a script started in the background has SIGINT ignored (``cmd &``),
#: one under nohup SIGHUP, and ``run`` keeps what it inherits.
_LAUNCHER = (
    "import os, signal, sys\n"
    "ignored = {int(n) for n in sys.argv[1].split(',') if n}\n"
    "for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
    "    signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _launched(args: tuple[str, ...], ignoring: Iterable[signal.Signals]) -> list[str]:
    """The command line of ``fencing-coord ARGS...``, started with SIGINT, SIGTERM and
    SIGHUP at their default action except those in ``ignoring``, whatever the runner's."""
    return [sys.executable, "-c", _LAUNCHER, ",".join(str(int(sig)) for sig in ignoring), *CLI, *args]


def cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``fencing-coord ARGS...`` to completion (signals as :func:`start_cli` says);
    stdout/stderr captured as text."""
    return subprocess.run(
        _launched(args, ()), capture_output=True, text=True, timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def start_cli(*args: str, ignoring: Iterable[signal.Signals] = ()) -> subprocess.Popen[str]:
    """Start ``fencing-coord ARGS...`` in the background; stdout/stderr piped as text. It
    starts with SIGINT, SIGTERM and SIGHUP at their default action, except those in
    ``ignoring`` (ignored, as under nohup), however the test runner was started."""
    return subprocess.Popen(_launched(args, ignoring), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    """Return the contents of ``path`` once it exists and is complete (written to a
    temporary name and renamed by the writer); AssertionError after ``timeout`` s.

    A bounded poll: the file is written by another process, nothing to await."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)
    return path.read_text()
