"""Timeouts are total bounds (issue 11, item 6): a call given a timeout returns or raises
within it plus ``deadlines.SLACK`` (0.5 s), even when a server accepts connections but
never answers (a black-hole listener, or a real server stopped with SIGSTOP)."""

from __future__ import annotations

import time
import uuid

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend
from fencing_coord.deadlines import SLACK
from fencing_coord.servers.zookeeper import ZooKeeperServer

from ..blackhole import BlackHole, assert_calls_end_within_their_timeout
from .conftest import ZooKeeperTarget, require_zookeeper

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0


def test_connect_to_a_hung_server_fails_within_its_timeout() -> None:
    """kazoo gave the handshake the whole session timeout (30 s here)."""
    with BlackHole() as hung:
        started = time.monotonic()
        with pytest.raises(fc.BackendUnavailable):
            fc.connect(f"zookeeper://{hung.endpoint}", timeout=1, ttl=30)
        took = time.monotonic() - started
    assert took < 1 + SLACK, f"connect(timeout=1) took {took:.2f} s"


def test_a_hung_host_is_passed_over_for_a_live_one(zk_standalone: ZooKeeperTarget) -> None:
    live = zk_standalone.url.removeprefix("zookeeper://").partition("?")[0]
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    with BlackHole() as hung:
        started = time.monotonic()
        with fc.connect(f"zookeeper://{hung.endpoint},{live}?randomize_hosts=false", timeout=1, ttl=4,
                        namespace=namespace) as backend:
            took = time.monotonic() - started
            assert took < 1 + SLACK, f"connect(timeout=1) took {took:.2f} s"
            grant = backend.acquire("orders", timeout=PROMPT)
            assert backend.release(grant) is True


def test_acquire_and_campaign_on_a_hung_server_end_within_their_timeout() -> None:
    require_zookeeper()
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    with ZooKeeperServer() as server, fc.connect(server.url, ttl=20, namespace=namespace) as connected, \
            fc.connect(server.url, ttl=20, timeout=1, namespace=namespace) as closing:
        assert isinstance(connected, ZooKeeperBackend)
        backend = connected
        held = backend.acquire("payments", timeout=PROMPT)
        closing.acquire("invoices", timeout=PROMPT)
        server.pause(server.member)
        try:
            assert_calls_end_within_their_timeout(backend, closing, "ZooKeeper")
        finally:
            server.resume(server.member)
        assert backend.wait_connected(PROMPT)
        # Nothing the abandoned calls sent may block the lock once the server answers again.
        with fc.connect(server.url, ttl=20, namespace=namespace) as other:
            assert other.acquire("orders", timeout=PROMPT).token > held.token
