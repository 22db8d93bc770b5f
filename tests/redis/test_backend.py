"""What is specific to the Redis backend: its URL, its keys, its round trips, its wake-ups
and how it treats data it did not write."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

import fencing_coord as fc
from fencing_coord.backends.redis import RedisBackend
from fencing_coord.servers import free_port
from fencing_coord.servers.redis import RedisServer
from fencing_coord.testing import ObservedLeaders

from ..faults import PROMPT, Holder
from .conftest import expire_session, raw_client

pytestmark = pytest.mark.redis

Connect = Callable[..., RedisBackend]


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def connect(redis_server: RedisServer, namespace: str) -> Iterator[Connect]:
    made: list[fc.LockBackend] = []

    def make(**options: Any) -> RedisBackend:
        options.setdefault("namespace", namespace)
        options.setdefault("ttl", 2)
        backend = fc.connect(options.pop("url", redis_server.url), **options)
        made.append(backend)
        assert isinstance(backend, RedisBackend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Any]:
    made = raw_client(redis_server)
    yield made
    made.close()


def _queued_acquire(backend: fc.LockBackend, name: str) -> tuple[Future[fc.Grant], threading.Event]:
    """``backend.acquire(name)`` on a thread of its own; the event is set once queued."""
    queued = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(lambda: backend.acquire(name, PROMPT, on_queued=queued.set))
    pool.shutdown(wait=False)
    return future, queued


def evalsha_calls(client: Any) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_keys_of_a_lock(connect: Connect, client: Any, namespace: str) -> None:
    backend = connect()
    grant = backend.acquire("orders", timeout=PROMPT)
    base = f"/fencing-coord/{namespace}/locks/orders"
    assert int(client.get(base + "/token") or 0) == grant.token
    [(member, score)] = client.zrange(base + "/queue", 0, -1, withscores=True)
    assert score == grant.token
    entry = client.hgetall(f"{base}/e/{member.decode()}")
    assert entry[b"sid"].decode() == backend.session_id
    assert entry[b"who"].decode() == backend.identity
    assert 0 < client.pttl(f"{base}/e/{member.decode()}") <= 2000
    backend.release(grant)
    assert not client.exists(base + "/queue")
    assert int(client.get(base + "/token") or 0) == grant.token, "the counter must outlive the lock"


def test_database_number_from_the_url(redis_server: RedisServer, connect: Connect, namespace: str) -> None:
    backend = connect(url=redis_server.url_of(redis_server.primary, db=3))
    backend.acquire("orders", timeout=PROMPT)
    other_db = redis.Redis(port=redis_server.port, db=3)
    try:
        assert other_db.exists(f"/fencing-coord/{namespace}/locks/orders/token")
    finally:
        other_db.close()
    assert connect().try_acquire("orders") is not None, "database 0 saw database 3's lock"


def test_uncontended_acquire_and_release_are_one_script_each(connect: Connect, client: Any) -> None:
    backend = connect(ttl=60)  # no keepalive round during the test
    backend.release(backend.acquire("warm-up", timeout=PROMPT))
    before = evalsha_calls(client)
    backend.release(backend.acquire("orders", timeout=PROMPT))
    assert evalsha_calls(client) - before == 2


def test_one_keepalive_script_per_round_for_every_held_key(connect: Connect, client: Any) -> None:
    backend = connect(ttl=60)
    grants = [backend.acquire(f"lock-{i}", timeout=PROMPT) for i in range(5)]
    term = backend.election("scheduler").campaign(timeout=PROMPT)
    before = evalsha_calls(client)
    backend._session._round()
    assert evalsha_calls(client) - before == 1
    for grant in grants:
        assert 50_000 < client.pttl(grant.entry.keys.entry(grant.entry.id)) <= 60_000
    assert not term.lost


def test_only_the_next_waiter_is_woken(connect: Connect, client: Any) -> None:
    holder = connect()
    grant = holder.acquire("orders", timeout=PROMPT)
    waiters = [connect() for _ in range(3)]
    futures = []
    for waiter in waiters:
        future, queued = _queued_acquire(waiter, "orders")
        assert queued.wait(PROMPT)
        futures.append(future)
    listener = client.pubsub()
    listener.psubscribe("/fencing-coord/wake/*")
    assert listener.get_message(timeout=PROMPT)["type"] == "psubscribe"
    holder.release(grant)
    first = futures[0].result(PROMPT)
    message = listener.get_message(timeout=PROMPT)
    assert message["channel"].decode() == f"/fencing-coord/wake/{waiters[0].session_id}"
    assert listener.get_message(timeout=0.2) is None, "a release woke more than the next waiter"
    assert not futures[1].done()
    waiters[0].release(first)
    assert futures[1].result(PROMPT).holder == waiters[1].identity
    listener.close()


def test_a_killed_holders_waiter_is_granted_after_the_ttl(redis_server: RedisServer, connect: Connect,
                                                          namespace: str, tmp_path: Path) -> None:
    holder = Holder(redis_server.url, f"sqlite:{tmp_path / 'state.db'}", ttl=1, namespace=namespace)
    try:
        holder.send("acquire orders")
        token = holder.expect("acquired")["token"]
        waiter = connect()
        holder.proc.kill()  # publishes nothing: the waiter looks again when its hash expires
        grant = waiter.acquire("orders", timeout=PROMPT)
        assert grant.token > token
    finally:
        holder.close()


def test_a_contender_taken_out_of_the_queue_is_reported_lost(connect: Connect, client: Any) -> None:
    backend = connect()
    grant = backend.acquire("orders", timeout=PROMPT)
    client.zrem(grant.entry.keys.queue, grant.entry.id)
    assert grant.wait_lost(PROMPT)
    assert grant.lost_reason is not None
    assert grant.lost_reason.startswith("lease expired")
    with pytest.raises(fc.LockLost):
        backend.renew(grant)


def test_scripts_are_loaded_again_after_script_flush(connect: Connect, client: Any) -> None:
    backend = connect()
    backend.release(backend.acquire("orders", timeout=PROMPT))
    client.script_flush()
    grant = backend.acquire("orders", timeout=PROMPT)
    client.script_flush()
    backend._session._round()  # the keepalive's pipeline reloads them too
    assert not grant.lost
    assert backend.release(grant) is True


def test_foreign_data_at_a_counter_is_a_configuration_error(connect: Connect, client: Any,
                                                            namespace: str) -> None:
    client.set(f"/fencing-coord/{namespace}/locks/orders/token", "not a number")
    with pytest.raises(fc.ConfigurationError, match="did not write"):
        connect().acquire("orders", timeout=PROMPT)


def test_locks_lists_held_and_awaited_names_in_odd_namespaces(connect: Connect) -> None:
    odd = f"a*b?[c]\\{uuid.uuid4().hex[:6]}"
    mine, neighbour = connect(namespace=odd), connect(namespace=odd + "x")
    mine.acquire("orders", timeout=PROMPT)
    mine.acquire("pay*ments", timeout=PROMPT)
    neighbour.acquire("elsewhere", timeout=PROMPT)
    assert mine.locks() == ["orders", "pay*ments"]


def test_observers_see_a_dead_leader_go(connect: Connect, redis_server: RedisServer) -> None:
    leader, watcher = connect(), connect()
    term = leader.election("scheduler").campaign(timeout=PROMPT, value=b"v")
    seen = ObservedLeaders()
    handle = watcher.election("scheduler").observe(seen)
    try:
        seen.wait_for(fc.Leader(leader.identity, b"v", term.token))
        expire_session(redis_server, leader)  # nothing is published when a hash expires
        seen.wait_for(None)
    finally:
        handle.stop()


def test_nothing_listening_is_backend_unavailable_and_keeps_the_password() -> None:
    url = f"redis://user:sekrit@127.0.0.1:{free_port()}/0"
    with pytest.raises(fc.BackendUnavailable) as info:
        fc.connect(url, timeout=0.5)
    assert "sekrit" not in str(info.value)
    assert "***" in str(info.value)


def test_wrong_password_is_a_configuration_error(redis_server: RedisServer) -> None:
    with pytest.raises(fc.ConfigurationError, match="refused") as info:
        fc.connect(f"redis://nobody:sekrit@127.0.0.1:{redis_server.port}")
    assert "sekrit" not in str(info.value)


@pytest.mark.parametrize(("url", "message"), [
    ("redis://127.0.0.1:1,127.0.0.1:2", "one Redis server"),
    ("redis://127.0.0.1/app", "database number"),
    ("redis://127.0.0.1?ca=/etc/hostname", "need TLS"),
    ("rediss://127.0.0.1?cert=/etc/hostname", "both cert= and key="),
    ("rediss://127.0.0.1?ca=/nonexistent.pem", "cannot read"),
    ("redis://127.0.0.1?durability=sometimes", "fsync, replicas or best-effort"),
    ("redis://127.0.0.1?durability=fsync&replicas=2", "replicas= goes with durability=replicas"),
    ("redis://127.0.0.1?durability=replicas&replicas=0", "whole number >= 1"),
    ("redis://127.0.0.1?colour=blue", "does not take option(s) colour"),
])
def test_bad_urls_say_what_to_fix(url: str, message: str) -> None:
    with pytest.raises(fc.ConfigurationError, match=re.escape(message)):
        fc.connect(url)


def test_a_user_who_may_not_read_the_config_needs_best_effort(redis_server: RedisServer, client: Any,
                                                               namespace: str) -> None:
    user = f"limited-{uuid.uuid4().hex[:6]}"
    client.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                       commands=["+@all", "-config"])
    try:
        url = f"redis://{user}:pw@{redis_server.primary.endpoint}"
        with pytest.raises(fc.ConfigurationError, match="cannot check that Redis keeps its token counters") as info:
            fc.connect(url, namespace=namespace)
        assert "durability=best-effort" in str(info.value)
        assert "pw@" not in str(info.value)
        with fc.connect(url, namespace=namespace, durability="best-effort") as backend:
            assert backend.try_acquire("orders") is not None
    finally:
        client.acl_deluser(user)
