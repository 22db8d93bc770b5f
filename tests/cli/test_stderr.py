"""The library never writes to stderr by itself, and the command line prints one line per
problem (issue 12, item 6): kazoo's connection chatter ("Connection dropped" per retry,
"Session has expired", "Transition to CONNECTING") goes to our logger at debug level,
gRPC's C core log lines are off, and the library's own warnings reach stderr only
through a handler the program configured."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fencing_coord.cli import EXIT_UNAVAILABLE

from ..blackhole import BlackHole, dead_port
from .helpers import cli

# Connect, fail, and say so on stdout: anything on stderr came from the library.
LIBRARY_CALL = """
import sys
import fencing_coord as fc
try:
    fc.connect(sys.argv[1], timeout=1, ttl=float(sys.argv[2]))
except fc.BackendUnavailable as exc:
    print("unavailable:", exc)
"""


@contextmanager
def unreachable(kind: str, scheme: str) -> Iterator[str]:
    if kind == "dead":
        yield f"{scheme}://127.0.0.1:{dead_port()}"
        return
    with BlackHole() as hole:
        yield f"{scheme}://{hole.endpoint}"


SERVERS = [(kind, scheme) for kind in ("dead", "hung") for scheme in ("etcd", "zookeeper")]


@pytest.mark.parametrize(("kind", "scheme"), SERVERS, ids=[f"{k}-{s}" for k, s in SERVERS])
def test_a_failed_connect_prints_nothing_on_stderr(kind: str, scheme: str) -> None:
    with unreachable(kind, scheme) as url:
        # ttl=1.5: kazoo's reconnection attempts are as frequent as they get.
        result = subprocess.run([sys.executable, "-c", LIBRARY_CALL, url, "1.5"], capture_output=True, text=True,
                                timeout=60)
    assert result.stdout.startswith("unavailable:"), (result.stdout, result.stderr)
    assert result.stderr == ""


@pytest.mark.parametrize(("kind", "scheme"), SERVERS, ids=[f"{k}-{s}" for k, s in SERVERS])
def test_a_failed_command_prints_one_line(kind: str, scheme: str) -> None:
    with unreachable(kind, scheme) as url:
        result = cli("status", "--url", url + "?timeout=1")
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("fencing-coord: error: ")


def test_the_library_s_own_warnings_need_a_configured_handler(zookeeper_url: str) -> None:
    """The server clamps ttl=100 to its maxSessionTimeout (60 s) and the backend logs a
    warning: Python's last-resort handler printed it on stderr."""
    code = ("import sys, fencing_coord as fc\n"
            "fc.connect(sys.argv[1], ttl=100).close()\n"
            "print('connected')\n")
    result = subprocess.run([sys.executable, "-c", code, zookeeper_url], capture_output=True, text=True, timeout=60)
    assert result.stdout == "connected\n", result.stderr
    assert result.stderr == ""
