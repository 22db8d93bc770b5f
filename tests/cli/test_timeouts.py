"""``run --timeout S`` bounds everything before the command starts, connecting included,
counted from the start of the process: against a dead or hung server it exits (69)
within S + 0.5 s (issue 11, item 6). No server is needed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from fencing_coord.cli import EXIT_UNAVAILABLE
from fencing_coord.deadlines import SLACK

from ..blackhole import BlackHole, dead_port
from .helpers import cli


@contextmanager
def dead(scheme: str) -> Iterator[str]:
    yield f"{scheme}://127.0.0.1:{dead_port()}"


@contextmanager
def hung(scheme: str) -> Iterator[str]:
    with BlackHole() as hole:
        yield f"{scheme}://{hole.endpoint}"


@pytest.mark.parametrize("scheme", ["etcd", "zookeeper"])
@pytest.mark.parametrize("server", [dead, hung], ids=["dead", "hung"])
def test_run_gives_up_within_its_timeout(scheme: str, server: Callable[[str], AbstractContextManager[str]]) -> None:
    with server(scheme) as url:
        started = time.monotonic()
        result = cli("run", "--url", url, "--lock", "nightly", "--timeout", "2", "--", "true")
        took = time.monotonic() - started
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert took < 2 + SLACK, f"run --timeout 2 took {took:.2f} s against a {server.__name__} server"
