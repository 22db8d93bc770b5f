"""The pause scenario in one process (memory://, an injected clock), with a hook between
its steps so a test can look at the metrics while it runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import fencing_coord as fc
from fencing_coord.gate import FencedResource, WriteResult
from fencing_coord.testing import FakeClock

RESOURCE = "ledger"
KEY = "balance"
TTL = 10.0


@dataclass
class PauseRun:
    holder_token: int
    successor_token: int
    late: WriteResult


def run_pause_scenario(resource: FencedResource, step: Callable[[str], None]) -> PauseRun:
    """The holder writes, is paused past its lease (the clock moves), the successor is
    granted the lock and writes, the holder resumes and writes with its old token, then
    leaves its ``lock()`` block. ``step(name)`` is called after each step."""
    clock = FakeClock()
    table = f"memory://pause-{uuid.uuid4().hex[:8]}"
    with fc.connect(table, clock=clock, ttl=TTL, identity="holder") as holder, \
            fc.connect(table, clock=clock, ttl=TTL, identity="successor") as successor:
        with holder.lock(RESOURCE, timeout=0) as grant:
            resource.write(RESOURCE, KEY, b"holder: first write", token=grant.token, holder="holder"
                           ).raise_for_status()
            step("holder wrote")
            clock.advance(TTL + 5)  # SIGSTOP: no keepalives while paused
            taken = successor.acquire(RESOURCE, timeout=0)
            resource.write(RESOURCE, KEY, b"successor: write", token=taken.token, holder="successor"
                           ).raise_for_status()
            successor.release(taken)
            step("successor wrote")
            late = resource.write(RESOURCE, KEY, b"holder: late write", token=grant.token, holder="holder")
            step("late write")
            assert grant.wait_lost(30.0)  # its on_lost callbacks (the loss counter) have run
        step("holder left lock()")
    return PauseRun(grant.token, taken.token, late)
