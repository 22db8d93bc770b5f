"""The ZooKeeper monitor's thread wakes only when a grant needs it: grants handed over
from their predecessor's deletion are watched from the start, so a stream of them never
wakes it, however long each is held (it used to tick every 50 ms for a second after every
grant). That an out-of-band deletion of a held node is still reported is pinned by
``test_backend`` and ``test_elections`` (a node deleted while held)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend
from fencing_coord.backends.zookeeper.grant import ZooKeeperGrant

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0
# Longer than the 50 ms after which the monitor watches the node of a grant that has no
# watch yet: a scenario (a grant held that long), not a synchronisation.
HELD = 0.15


def _hand_over(holder: ZooKeeperBackend, grant: fc.Grant, waiter: ZooKeeperBackend) -> fc.Grant:
    """``waiter`` queues behind ``grant``, which ``holder`` then releases: the waiter's grant."""
    queued = threading.Event()
    result: list[fc.Grant] = []
    thread = threading.Thread(target=lambda: result.append(waiter.acquire("orders", timeout=PROMPT,
                                                                           on_queued=queued.set)), daemon=True)
    thread.start()
    assert queued.wait(PROMPT)
    assert holder.release(grant) is True
    thread.join(PROMPT)
    assert result, "the waiter was not granted"
    return result[0]


def test_grants_handed_over_never_wake_the_monitor(make: Any) -> None:
    # The first grant, in an empty queue, has no watch: the monitor of its backend (not
    # counted) wakes to set one if it is held for 50 ms.
    first = make()
    backends: list[ZooKeeperBackend] = [make(), make()]
    grant = _hand_over(first, first.acquire("orders", timeout=PROMPT), backends[0])
    # Each monitor may be woken by its first grant: before it, it had no deadline
    # (presuming its grants lost, a session timeout away).
    grant = _hand_over(backends[0], grant, backends[1])
    woken = [backend._monitor.wakeups for backend in backends]
    assert max(woken) <= 1
    for turn in range(10):
        grant = _hand_over(backends[(turn + 1) % 2], grant, backends[turn % 2])
        assert isinstance(grant, ZooKeeperGrant)
        assert grant.armed, "a grant handed over is watched from the start"
        if turn in (4, 5):
            threading.Event().wait(HELD)
    assert [backend._monitor.wakeups for backend in backends] == woken
    assert backends[1].release(grant) is True


def test_grants_in_quick_succession_share_the_monitors_wake_ups(make: Any) -> None:
    """Grants without a watch (each alone in the queue) need the monitor 50 to 100 ms
    later; given up at once, one after the other, they do not wake it one each: after
    one, the thread looks again within 100 ms, and every grant until then needs nothing
    more. (Each acquisition takes far less than 100 ms here.)"""
    backend = make()
    backend.release(backend.acquire("orders", timeout=PROMPT))  # the parents are made
    woken = backend._monitor.wakeups
    grants = 40
    for _ in range(grants):
        grant = backend.acquire("orders", timeout=PROMPT)
        assert isinstance(grant, ZooKeeperGrant)
        assert not grant.armed
        assert backend.release(grant) is True
    assert backend._monitor.wakeups - woken <= grants // 4
