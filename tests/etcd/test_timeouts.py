"""Timeouts are total bounds (issue 11, item 6): a call given a timeout returns or raises
within it plus ``deadlines.SLACK`` (0.5 s), even when etcd accepts connections but never
answers (a black-hole listener, or a real etcd stopped with SIGSTOP)."""

from __future__ import annotations

import time
import uuid

import pytest

import fencing_coord as fc
from fencing_coord.deadlines import SLACK
from fencing_coord.servers.etcd import EtcdServer

from ..blackhole import BlackHole, assert_calls_end_within_their_timeout
from .conftest import require_etcd_binary

pytestmark = pytest.mark.etcd

PROMPT = 30.0


@pytest.mark.parametrize("credentials", ["", "alice:secret@"], ids=["anonymous", "with-login"])
def test_connect_to_a_hung_server_fails_within_its_timeout(credentials: str) -> None:
    with BlackHole() as hung:
        started = time.monotonic()
        with pytest.raises(fc.BackendUnavailable):
            fc.connect(f"etcd://{credentials}{hung.endpoint}", timeout=1)
        took = time.monotonic() - started
    assert took < 1 + SLACK, f"connect(timeout=1) took {took:.2f} s"


def test_acquire_and_campaign_on_a_hung_etcd_end_within_their_timeout() -> None:
    require_etcd_binary()
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    with EtcdServer() as server, fc.connect(server.url, ttl=10, namespace=namespace) as backend, \
            fc.connect(server.url, ttl=10, timeout=1, namespace=namespace) as closing:
        held = backend.acquire("payments", timeout=PROMPT)  # the connection and lease are up
        closing.acquire("invoices", timeout=PROMPT)
        server.pause(server.member)
        try:
            assert_calls_end_within_their_timeout(backend, closing, "etcd")
        finally:
            server.resume(server.member)
        # Nothing the abandoned calls sent may block the lock once etcd answers again.
        with fc.connect(server.url, ttl=10, namespace=namespace) as other:
            assert other.acquire("orders", timeout=PROMPT).token > held.token
