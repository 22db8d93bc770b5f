"""Faults on real redis-server processes and real client processes.

(a) a holder process is SIGSTOPped past its TTL: another client acquires and writes; the
    holder resumes, its write is refused by the gate, and it sees ``lost``;
(b) Redis is killed and restarted with AOF (appendfsync always): later tokens are larger;
(c) Redis is restarted without persistence, in best-effort mode: the client that saw the
    higher tokens detects the regression and issues no lower token;
(d) Redis is paused: a held grant reads as lost once its lease has run out, and acquire
    says the service is unavailable;
(e) durability=replicas: grants wait for a real replica, and are refused (nothing left
    queued) while it is paused.

Nothing here sleeps to synchronise: every wait is on a process's report, a lock grant or
an ``on_lost`` event (with a generous bound only so that a broken build fails instead
of hanging).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import fencing_coord as fc
from fencing_coord.backends.redis import RedisBackend, TokenRegression
from fencing_coord.servers.redis import RedisServer

from ..faults import PROMPT, pause_holder_past_its_ttl
from .conftest import own_server

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def namespace() -> str:
    return f"faults-{uuid.uuid4().hex[:10]}"


def tokens_of(backend: fc.LockBackend, count: int, name: str = "orders") -> list[int]:
    tokens = []
    for _ in range(count):
        grant = backend.acquire(name, timeout=PROMPT)
        tokens.append(grant.token)
        backend.release(grant)
    return tokens


# -- (a) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"])
def test_paused_holder_is_refused_and_sees_lost(
    redis_server: RedisServer, tmp_path: Path, namespace: str, store_kind: str
) -> None:
    with fc.connect(redis_server.url, ttl=2, namespace=namespace) as successor:
        assert isinstance(successor, RedisBackend)
        run = pause_holder_past_its_ttl(successor, redis_server.url, store_kind, tmp_path, ttl=2,
                                        namespace=namespace)
        assert run.late["lost"] is True
        assert run.late["lost_reason"].startswith("lease expired")
        assert run.lost["reason"].startswith("lease expired")
        successor.release(run.grant)


# -- (b) ----------------------------------------------------------------------------------------


@pytest.fixture
def aof_server() -> Iterator[RedisServer]:
    with own_server() as server:
        yield server


def test_tokens_keep_increasing_across_a_crash_and_restart_with_aof(aof_server: RedisServer,
                                                                   namespace: str) -> None:
    with fc.connect(aof_server.url, ttl=5, namespace=namespace) as before:
        earlier = tokens_of(before, 5)
        election = before.election("leader").campaign(timeout=PROMPT)
        election.resign()
    aof_server.kill()  # SIGKILL: only what reached the AOF survives
    aof_server.restart()
    # A new client knows nothing of the earlier tokens: only Redis's counter does.
    with fc.connect(aof_server.url, ttl=5, namespace=namespace) as after:
        later = tokens_of(after, 3)
        term = after.election("leader").campaign(timeout=PROMPT)
        assert term.token > election.token
    assert later[0] > earlier[-1], (earlier, later)
    assert earlier + later == sorted(set(earlier + later))


def test_a_held_lock_survives_a_graceful_restart_with_aof(aof_server: RedisServer, namespace: str) -> None:
    with fc.connect(aof_server.url, ttl=5, namespace=namespace) as holder, \
            fc.connect(aof_server.url, ttl=5, namespace=namespace) as other:
        grant = holder.acquire("orders", timeout=PROMPT)
        aof_server.restart()
        assert holder.renew(grant) is grant  # the contender and its expiry came back from the AOF
        assert other.try_acquire("orders") is None
        assert holder.release(grant) is True
        assert other.acquire("orders", timeout=PROMPT).token > grant.token


# -- (c) ----------------------------------------------------------------------------------------


def test_regression_after_a_restart_without_persistence_is_refused(namespace: str) -> None:
    with own_server(persistence=False) as server, \
            fc.connect(server.url, ttl=5, namespace=namespace, durability="best-effort") as backend:
        earlier = tokens_of(backend, 5)
        held = backend.acquire("payments", timeout=PROMPT)
        lost = threading.Event()
        held.on_lost(lambda grant: lost.set())
        server.restart()  # empty: every counter is gone

        with pytest.raises(TokenRegression) as info:
            backend.acquire("orders", timeout=PROMPT)
        assert f"already seen token {earlier[-1]}" in str(info.value)
        assert info.value.retryable
        assert isinstance(info.value, fc.TokenSpaceExhausted)
        assert backend.describe("orders").holder is None, "a refused grant left its contender behind"
        # The refusal raised the counter past what this client saw: no lower token, ever.
        again = backend.acquire("orders", timeout=PROMPT)
        assert again.token > earlier[-1]
        backend.release(again)
        with fc.connect(server.url, ttl=5, namespace=namespace, durability="best-effort") as newcomer:
            assert newcomer.acquire("orders", timeout=PROMPT).token > again.token
        # The grant held across the restart is gone with Redis's data, and reported lost.
        assert lost.wait(PROMPT)
        assert held.lost_reason is not None
        assert held.lost_reason.startswith("lease expired")


def test_regression_is_refused_for_elections_too(namespace: str) -> None:
    with own_server(persistence=False) as server, \
            fc.connect(server.url, ttl=5, namespace=namespace, durability="best-effort") as backend:
        election = backend.election("scheduler")
        for _ in range(3):
            election.campaign(timeout=PROMPT).resign()
        seen = election.campaign(timeout=PROMPT)
        seen.resign()
        server.restart()
        with pytest.raises(TokenRegression):
            election.campaign(timeout=PROMPT)
        assert election.campaign(timeout=PROMPT).token > seen.token


def test_server_without_persistence_is_refused_unless_best_effort(namespace: str) -> None:
    with own_server(persistence=False) as server:
        with pytest.raises(fc.ConfigurationError, match="appendonly") as info:
            fc.connect(server.url, namespace=namespace)
        assert "durability=best-effort" in str(info.value)
        fc.connect(server.url, namespace=namespace, durability="best-effort").close()


def test_appendfsync_everysec_is_refused(namespace: str) -> None:
    with own_server(appendfsync="everysec") as server, \
            pytest.raises(fc.ConfigurationError, match="appendfsync is 'everysec'"):
            fc.connect(server.url, namespace=namespace)


def test_allkeys_eviction_is_refused(namespace: str) -> None:
    with own_server(extra_args=("--maxmemory-policy", "allkeys-lru")) as server, \
            pytest.raises(fc.ConfigurationError, match="may evict the token counters"):
            fc.connect(server.url, namespace=namespace)


# -- (d) ----------------------------------------------------------------------------------------


def test_paused_redis_makes_grants_lost_and_acquire_unavailable(namespace: str) -> None:
    with own_server() as server, fc.connect(server.url, ttl=1, timeout=0.5, namespace=namespace) as backend:
        grant = backend.acquire("orders", timeout=PROMPT)
        lost = threading.Event()
        grant.on_lost(lambda g: lost.set())
        server.pause()
        try:
            assert lost.wait(PROMPT), "a grant outlived its lease while Redis did not answer"
            assert grant.lost_reason is not None
            assert grant.lost_reason.startswith("lease expired")
            with pytest.raises(fc.BackendUnavailable):
                backend.acquire("payments", timeout=PROMPT)
        finally:
            server.resume()
        assert backend.acquire("orders", timeout=PROMPT).token > grant.token


# -- (e) ----------------------------------------------------------------------------------------


def test_replicas_durability_waits_for_a_replica(namespace: str) -> None:
    with own_server(persistence=False, replicas=1) as server, \
            fc.connect(server.url, namespace=namespace, durability="replicas", replicas=1, timeout=3) as backend, \
            fc.connect(server.url, namespace=namespace, durability="best-effort") as other:
        # A fresh replica acknowledges its first write within about a second: WAIT 1.5 s.
        first = backend.acquire("orders", timeout=PROMPT)
        backend.release(first)
        server.pause(server.members[1])
        try:
            with pytest.raises(fc.BackendUnavailable, match="0 of 1 replica"):
                backend.acquire("orders", timeout=PROMPT)
            assert other.describe("orders").holder is None, "a refused grant left its contender behind"
        finally:
            server.resume(server.members[1])
        assert backend.acquire("orders", timeout=PROMPT).token > first.token


def test_replicas_needs_replicas(namespace: str) -> None:
    with own_server(persistence=False) as server, \
            fc.connect(server.url, namespace=namespace, durability="replicas", timeout=0.2) as backend, \
            pytest.raises(fc.BackendUnavailable, match="0 of 1 replica"):
            backend.acquire("orders", timeout=PROMPT)
