"""The pause part of the lock conformance suite: a holder process stopped (SIGSTOP) past
its TTL, as a long GC pause or a frozen VM would stop it, while the service grants the
lock to a successor.

The rule every backend follows: when nothing was heard from the service for a whole
lease/session TTL (on the holder's monotonic clock), the grant is presumed lost, and the
first read of ``grant.lost`` after the pause already says so, before any request and
whichever of the process's threads runs first once it is resumed. Its ``release`` then
answers False at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from ..errors import FencingCoordError
from ..interface import LockBackend
from .expiry import AT_ONCE, PROMPT
from .fixtures import MakeBackend

__all__ = ["PausedHolderConformance"]


class PausedHolderConformance:
    """Mixin (part of :class:`~fencing_coord.testing.LockBackendConformance`): a real
    holder process, paused past its TTL, sees ``lost`` at its first look."""

    def test_a_holder_paused_past_its_ttl_sees_lost_at_its_first_look(
        self, make_backend: MakeBackend, namespace: str
    ) -> None:
        successor = make_backend()
        if not successor.capabilities.multiprocess:
            pytest.skip(f"{type(successor).__name__} serves one process only")
        url = getattr(self, "backend_url", None) or getattr(self, "default_url", None)
        if url is None:
            pytest.skip("a holder process needs backend_url")
        holder = _spawn_holder(url, namespace, successor.ttl)
        try:
            acquired = _report(holder)
            assert acquired["event"] == "acquired", acquired
            holder.send_signal(signal.SIGSTOP)  # no keepalive, no heartbeat, no thread runs
            # Granted once the service has expired the stopped holder's lease/session.
            taken = successor.acquire("orders", timeout=PROMPT)
            assert taken.token > acquired["token"]
            # The command is waiting in the pipe when the holder resumes: its first look
            # races with its own background threads, which must not matter.
            _send(holder, "look")
            holder.send_signal(signal.SIGCONT)
            looked = _report(holder)
            assert looked["event"] == "looked", looked
            assert looked["lost"] is True, f"the resumed holder's first look said not lost: {looked}"
            assert looked["released"] is False, looked
            assert looked["release_took"] < AT_ONCE, looked
            assert successor.describe("orders").token == taken.token
        finally:
            _end(holder)


def _spawn_holder(url: str, namespace: str, ttl: float) -> subprocess.Popen[str]:
    code = "import sys; from fencing_coord.testing.pause import holder_main; holder_main(*sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, url, namespace, str(ttl)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"holder {proc.pid} exited (status {proc.wait(PROMPT)}) without reporting")
    report: dict[str, Any] = json.loads(line)
    return report


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    proc.wait(PROMPT)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def _say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def holder_main(url: str, namespace: str, ttl: str) -> None:
    """The holder process: acquire ``orders``, report, wait for a line on stdin (it
    arrives while the process is stopped), then look at ``lost`` first thing and
    release, and report both."""
    from ..config import connect

    backend: LockBackend
    with connect(url, namespace=namespace, ttl=float(ttl)) as backend:
        grant = backend.acquire("orders", timeout=PROMPT)
        _say(event="acquired", token=grant.token)
        sys.stdin.readline()
        lost = grant.lost  # the first look after the pause
        started = time.monotonic()
        try:
            released: bool | None = backend.release(grant)
            error = None
        except FencingCoordError as exc:
            released, error = None, repr(exc)
        _say(event="looked", lost=lost, reason=grant.lost_reason, released=released, error=error,
             release_took=time.monotonic() - started)
