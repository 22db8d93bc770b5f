"""Scenarios of the tooz driver on any real backend, shared by tests/etcd and
tests/zookeeper: tooz's own suite, tokens, and exclusion with plain clients."""

from __future__ import annotations

import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

import fencing_coord as fc

from .tooz_suite import assert_as_good_as_toozs_own, run_tooz_suite

coordination = pytest.importorskip("tooz.coordination")

PROMPT = 30.0


def tooz_url(backend_url: str, **options: object) -> str:
    """``fencing-coord+<backend url>`` with ``options`` added to its query."""
    sep = "&" if "?" in backend_url else "?"
    return f"fencing-coord+{backend_url}{sep}{urllib.parse.urlencode(options)}"


class ToozDriverCases:
    """Subclasses set ``backend_url`` (a fixture value) through ``_url``."""

    ttl = 3

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def namespace(self) -> str:
        return f"t-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def coordinator(self, url: str, namespace: str) -> Any:
        made: list[Any] = []

        def make(member: bytes) -> Any:
            coord = coordination.get_coordinator(tooz_url(url, namespace=namespace, ttl=self.ttl), member)
            coord.start()
            made.append(coord)
            return coord

        yield make
        for coord in made:
            if coord.is_started:
                coord.stop()

    @pytest.fixture
    def plain(self, url: str, namespace: str) -> Any:
        backend = fc.connect(url, namespace=namespace, ttl=self.ttl, identity="plain")
        yield backend
        backend.close()

    def test_tooz_suite_is_as_good_as_toozs_own_drivers(self, url: str, tmp_path: Path) -> None:
        assert_as_good_as_toozs_own(run_tooz_suite(tooz_url(url, ttl=self.ttl), tmp_path))

    def test_lock_token_is_the_grants_and_plain_clients_are_excluded(self, coordinator: Any, plain: Any) -> None:
        lock = coordinator(b"member-a").get_lock(b"orders/eu")
        assert lock.token is None
        assert lock.acquire(blocking=False)
        state = plain.describe("orders%2Feu")
        assert (state.holder, state.token) == ("member-a", lock.token)
        assert plain.try_acquire("orders%2Feu") is None
        assert lock.heartbeat()
        assert lock.release()
        assert lock.token is None
        grant = plain.acquire("orders%2Feu", timeout=PROMPT)
        assert grant.token > state.token
        assert not lock.acquire(blocking=False)
        plain.release(grant)

    def test_blocking_float_is_a_timeout_and_release_works_from_another_thread(self, coordinator: Any) -> None:
        holder = coordinator(b"member-a").get_lock(b"orders")
        other = coordinator(b"member-b").get_lock(b"orders")
        assert holder.acquire()
        started = time.monotonic()
        assert not other.acquire(blocking=0.5)
        assert time.monotonic() - started >= 0.5
        released: list[bool] = []
        thread = threading.Thread(target=lambda: released.append(holder.release()))
        thread.start()
        thread.join(PROMPT)
        assert released == [True]
        assert other.acquire(blocking=PROMPT)
        assert other.release()

    def test_not_reentrant_within_one_coordinator(self, coordinator: Any) -> None:
        coord = coordinator(b"member-a")
        first, second = coord.get_lock(b"orders"), coord.get_lock(b"orders")
        assert first.acquire()
        assert not first.acquire(blocking=False)
        assert not second.acquire(blocking=0.2)
        assert first.release()
        assert second.acquire(blocking=False)
        assert second.release()

    def test_leader_term_token_and_plain_observers(self, coordinator: Any, plain: Any) -> None:
        coord = coordinator(b"member-a")
        elected: list[Any] = []
        coord.watch_elected_as_leader(b"scheduler", elected.append)
        coord.run_watchers()
        assert [(e.group_id, e.member_id) for e in elected] == [(b"scheduler", b"member-a")]
        term = coord.leader_term(b"scheduler")
        assert term is not None
        leader = plain.election("scheduler").leader()
        assert (leader.identity, leader.token) == ("member-a", term.token)
        with pytest.raises(fc.LockTimeout):
            plain.election("scheduler").campaign(timeout=0)
        assert coord.stand_down_group_leader(b"scheduler")
        assert coord.leader_term(b"scheduler") is None
        assert coord.get_leader(b"scheduler").get() is None
