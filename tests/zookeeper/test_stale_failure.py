"""A request sent ahead of its wait (``presend``: a waiter's ``exists`` on its own node goes
out with the predecessor's) can fail with a connection older than the one the session
is on when its answer is collected: the session expired meanwhile and a new one was
made. The request is then sent again on the new connection once it has stayed up a
moment; it used to wait for a connection newer still, which never came (60 s, then
BackendUnavailable "no connection to ZooKeeper in time; state connected":
test_faults.py::test_forced_session_expiry_fires_on_lost_once failed that way under
load)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from kazoo.exceptions import SessionExpiredError

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.backends.zookeeper.session import STALE_FAILURE

from .conftest import ZooKeeperTarget

BUDGET = 10.0


def _stale_then_real(client: Any, path: str, sent: list[str]) -> Callable[[], Any]:
    """A ``start`` whose first result is one that failed as a request sent on an expired
    session does (already failed when collected), and which then asks ZooKeeper itself."""

    def start() -> Any:
        if not sent:
            sent.append("stale")
            failed = client.handler.async_result()
            failed.set_exception(SessionExpiredError())
            return failed
        sent.append("real")
        return client.exists_async(path)

    return start


def test_a_request_that_failed_with_an_older_connection_is_sent_again(zk_standalone: ZooKeeperTarget,
                                                                       namespace: str) -> None:
    with fc.connect(zk_standalone.url, ttl=4, namespace=namespace) as connected:
        assert isinstance(connected, ZooKeeperBackend)
        session = connected._session
        assert session.wait_connected(BUDGET)
        sent: list[str] = []
        started = time.monotonic()
        stat = session.request("exists /", _stale_then_real(session.client, "/", sent), budget=BUDGET)
        assert stat is not None
        assert sent == ["stale", "real"]
        assert time.monotonic() - started < BUDGET / 2, "it waited for a connection that never came"


def test_the_asyncio_front_end_sends_it_again_too(zk_standalone: ZooKeeperTarget, namespace: str) -> None:
    async def main() -> None:
        async with await fc.aio.connect(zk_standalone.url, ttl=4, namespace=namespace) as connected:
            assert isinstance(connected, AsyncZooKeeperBackend)
            requests = connected._requests
            sent: list[str] = []
            started = time.monotonic()
            stat = await requests.request("exists /", _stale_then_real(requests.session.client, "/", sent),
                                          budget=BUDGET)
            assert stat is not None
            assert sent == ["stale", "real"]
            assert time.monotonic() - started < BUDGET / 2, "it waited for a connection that never came"
            assert time.monotonic() - started >= STALE_FAILURE * 0.9  # not at once: the connection had a moment

    asyncio.run(main())
