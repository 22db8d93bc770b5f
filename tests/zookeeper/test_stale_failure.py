"""A request sent ahead of its wait (``presend``: a waiter's ``exists`` on its own node goes
out with the predecessor's) may be collected after the session expired and a new one
was made. Its answer belongs to a connection gone since: it is sent again on the new
one. Taken as it was, its failure made ``Session.request`` wait for a connection newer
than the current one, which never came (60 s, then BackendUnavailable "no connection to
ZooKeeper in time; state connected": test_faults.py::
test_forced_session_expiry_fires_on_lost_once failed that way under load)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kazoo.exceptions import SessionExpiredError

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.backends.zookeeper.kazoo_results import presend
from fencing_coord.backends.zookeeper.session import Session, SessionState

from .conftest import ZooKeeperTarget, expire_session

pytestmark = pytest.mark.zookeeper

BUDGET = 10.0


def _dying_then_real(client: Any, path: str, sent: list[str]) -> Callable[[], Any]:
    """A ``start`` whose first request fails as one sent on a session about to expire
    does, and which then asks ZooKeeper itself."""

    def start() -> Any:
        if not sent:
            sent.append("on the old session")
            failed = client.handler.async_result()
            failed.set_exception(SessionExpiredError())
            return failed
        sent.append("again")
        return client.exists_async(path)

    return start


def _reconnected(session: Session, before: int) -> None:
    """Until ``session`` is connected on a connection made after epoch ``before``."""
    changed = threading.Event()
    assert session.add_wakeup(changed)
    try:
        deadline = time.monotonic() + BUDGET
        while session.current_epoch() <= before or session.state is not SessionState.CONNECTED:
            assert changed.wait(max(0.0, deadline - time.monotonic())), "no new session"
            changed.clear()
    finally:
        session.remove_wakeup(changed)


def test_a_request_sent_before_the_session_expired_is_sent_again_on_the_new_one(zk_standalone: ZooKeeperTarget,
                                                                                namespace: str) -> None:
    with fc.connect(zk_standalone.url, ttl=4, namespace=namespace) as connected:
        assert isinstance(connected, ZooKeeperBackend)
        session = connected._session
        before = session.current_epoch()
        sent: list[str] = []
        collect = presend(session.current_epoch, _dying_then_real(session.client, "/", sent))
        expire_session(zk_standalone, connected)
        _reconnected(session, before)
        started = time.monotonic()
        assert session.request("exists /", collect, budget=BUDGET) is not None
        assert sent == ["on the old session", "again"]
        assert time.monotonic() - started < BUDGET / 2, "it waited for a connection that never came"


def test_the_asyncio_front_end_sends_it_again_too(zk_standalone: ZooKeeperTarget, namespace: str) -> None:
    async def main() -> None:
        async with await fc.aio.connect(zk_standalone.url, ttl=4, namespace=namespace) as connected:
            assert isinstance(connected, AsyncZooKeeperBackend)
            requests = connected._requests
            session = requests.session
            before = session.current_epoch()
            sent: list[str] = []
            collect = presend(session.current_epoch, _dying_then_real(session.client, "/", sent))
            await asyncio.to_thread(expire_session, zk_standalone, connected)
            await asyncio.to_thread(_reconnected, session, before)
            started = time.monotonic()
            assert await requests.request("exists /", collect, budget=BUDGET) is not None
            assert sent == ["on the old session", "again"]
            assert time.monotonic() - started < BUDGET / 2, "it waited for a connection that never came"

    asyncio.run(main())
