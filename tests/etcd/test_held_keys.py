"""The blocking etcd backend watches a held key only once the grant has been held a
moment (:mod:`fencing_coord.backends.etcd.heldkeys`): a lock released at once costs
the held keys' stream no request, and a deletion of the key is still reported, whether
it came after the watch was created or before (etcd replays it: the watch starts at the
revision after the grant's)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from etcd3 import etcdrpc

import fencing_coord as fc
from fencing_coord.backends.etcd import EtcdBackend
from fencing_coord.servers.etcd import EtcdMember

from .conftest import EtcdTarget, live_messages, watch_requests

pytestmark = pytest.mark.etcd

PROMPT = 30.0

@pytest.fixture
def member(etcd_single: EtcdTarget) -> EtcdMember:
    """The single node, whose /metrics count the watch requests it received."""
    if etcd_single.cluster is None:
        pytest.skip("counts requests on the server's /metrics; not available for a container")
    return etcd_single.cluster.members[0]


@pytest.fixture
def backend(etcd_single: EtcdTarget) -> Iterator[EtcdBackend]:
    """A backend whose keepalive rounds (every 10 s) cannot be what reports a loss."""
    made = fc.connect(etcd_single.url, ttl=30, namespace=f"hk-{uuid.uuid4().hex[:10]}")
    assert isinstance(made, EtcdBackend)
    with made:
        yield made


@pytest.fixture
def operator(etcd_single: EtcdTarget) -> Iterator[Any]:
    """An out-of-band client, connected before the test's grants: a delete is one request."""
    client = etcd_single.client()
    client.status()
    try:
        yield client
    finally:
        client.close()


def _lost(grant: fc.Grant) -> threading.Event:
    told = threading.Event()
    grant.on_lost(lambda _grant: told.set())
    return told


def _lose_a_grant(backend: EtcdBackend, operator: Any, name: str) -> None:
    """Acquire ``name``, delete its key out of band and await the report, which comes
    from the grant's watch: once it came, etcd has received every request sent on the
    held keys' stream before that watch's create (and the stream is open)."""
    grant = backend.acquire(name, timeout=PROMPT)
    told = _lost(grant)
    operator.delete_prefix(backend.lock_prefix(name))
    assert told.wait(PROMPT), "the loss was not reported by the watch"
    assert grant.lost_reason == "lock key deleted"


def test_grants_released_at_once_send_no_watch_request(backend: EtcdBackend, member: EtcdMember,
                                                       operator: Any) -> None:
    """20 grants released at once, on an open stream, cost no watch create or cancel
    (each cost one of each before: 40 requests)."""
    _lose_a_grant(backend, operator, "first")  # the stream is open
    before = watch_requests(member)
    for _ in range(20):
        backend.release(backend.acquire("orders", timeout=PROMPT))
    _lose_a_grant(backend, operator, "last")  # every request of the 20 has arrived
    received = watch_requests(member) - before
    # "last"'s create, and possibly the cancels of "first" and "last" (sent once their
    # DELETE came, maybe not arrived): 1 to 3. Two more: room for one of the 20 grants
    # stalled past 0.1 s on a loaded machine.
    assert received <= 5, f"{received} watch requests for 20 grants released at once"


@pytest.mark.parametrize("stream_open", [False, True], ids=["first-stream", "open-stream"])
def test_a_key_deleted_while_watched_is_reported_promptly(backend: EtcdBackend, member: EtcdMember,
                                                          operator: Any, stream_open: bool) -> None:
    if stream_open:
        _lose_a_grant(backend, operator, "first")
    before = watch_requests(member)
    grant = backend.acquire("orders", timeout=PROMPT)
    told = _lost(grant)
    deadline = time.monotonic() + PROMPT
    while watch_requests(member) < before + 1:  # the grant's watch, once held 0.1 s
        assert time.monotonic() < deadline, "the held key was never watched"
        time.sleep(0.01)  # polling the server's counters: no event tells of it
    deleted = time.monotonic()
    operator.delete_prefix(backend.lock_prefix("orders"))
    assert told.wait(5.0), "the loss was not reported by the watch"
    assert grant.lost_reason == "lock key deleted"
    assert time.monotonic() - deleted < 5.0


@pytest.mark.parametrize("stream_open", [False, True], ids=["first-stream", "open-stream"])
def test_a_key_deleted_before_its_watch_is_reported(backend: EtcdBackend, member: EtcdMember,
                                                    operator: Any, stream_open: bool) -> None:
    """Deleted before the watch was created: the watch, which starts at the revision
    after the grant's, replays the DELETE."""
    if stream_open:
        _lose_a_grant(backend, operator, "first")
    # A delay the out-of-band delete surely falls in, even on a loaded machine.
    backend._held_keys.watch_after = 2.0
    before = watch_requests(member)
    grant = backend.acquire("orders", timeout=PROMPT)
    granted = time.monotonic()
    told = _lost(grant)
    operator.delete_prefix(backend.lock_prefix("orders"))
    assert time.monotonic() - granted < 2.0, "the delete took longer than the delay"
    assert watch_requests(member) == before, "the key was watched before the delete"
    assert told.wait(PROMPT), "a deletion before the watch began was not reported"
    assert grant.lost_reason == "lock key deleted"
    assert time.monotonic() - granted < 2.0 + 5.0
    assert watch_requests(member) > before  # reported by the watch, created after the delay


def _record_looks(held: Any, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The times (time.monotonic()) at which the side timing ``held``'s deferred watches
    looks for due ones from now on."""
    looks: list[float] = []
    real_take_due = held._take_due

    def take_due(requests: Any) -> float:
        looks.append(time.monotonic())
        due: float = real_take_due(requests)
        return due

    monkeypatch.setattr(held, "_take_due", take_due)
    return looks


@pytest.mark.parametrize("stream_open", [False, True], ids=["no-stream", "open-stream"])
def test_grants_released_at_once_do_not_wake_the_watch_timer_each_time(
        backend: EtcdBackend, operator: Any, monkeypatch: pytest.MonkeyPatch, stream_open: bool) -> None:
    """Grants held briefly, one after another, wake the side that times the deferred
    watches (the held keys' thread, or the open stream's request iterator) about once
    per ``watch_after``, not once per grant: each wake was a thread switch on the
    acquiring thread's path (100 grants: about 100 wakes before)."""
    if stream_open:
        _lose_a_grant(backend, operator, "first")
    held = backend._held_keys
    looks = _record_looks(held, monkeypatch)
    started = time.monotonic()
    for _ in range(100):
        backend.release(backend.acquire("orders", timeout=PROMPT))
    elapsed = time.monotonic() - started
    during = len([at for at in looks if at <= started + elapsed])
    assert during <= elapsed / held.watch_after + 4, f"{during} wakes for 100 grants in {elapsed:.2f} s"


@pytest.mark.parametrize("stream_open", [False, True], ids=["no-stream", "open-stream"])
def test_grants_spaced_longer_than_the_delay_wake_the_watch_timer_once_each(
        backend: EtcdBackend, operator: Any, monkeypatch: pytest.MonkeyPatch, stream_open: bool) -> None:
    """Grants held briefly, one every 1.5 ``watch_after`` (as each of 32 processes on one
    lock gets them): the timing side looks about once per grant, not twice (once woken
    by the add, once when the watch would have been due). The pause between grants is
    the workload's shape, not a synchronisation."""
    if stream_open:
        _lose_a_grant(backend, operator, "first")
    held = backend._held_keys
    held.watch_after = 0.2
    backend.release(backend.acquire("orders", timeout=PROMPT))  # the pace starts from here
    looks = _record_looks(held, monkeypatch)
    pace = threading.Event()
    started = time.monotonic()
    for _ in range(12):
        pace.wait(1.5 * held.watch_after)
        backend.release(backend.acquire("orders", timeout=PROMPT))
    elapsed = time.monotonic() - started
    during = len([at for at in looks if at <= started + elapsed])
    assert during <= 12 + 3, f"{during} looks for 12 grants in {elapsed:.2f} s"


def test_watch_creates_waiting_for_the_stream_keep_no_protobuf_message(
        backend: EtcdBackend, operator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The creates of a stream opened again (one per held key) wait in a queue until
    gRPC takes them, as plain values: each is made a message (about 1 KiB of C memory)
    only as the stream sends it. They waited as messages: 65 of them where a test of
    300 held locks allowed 64 (issue 13: < 2 KiB per held lock), hundreds when the
    process is starved of CPU."""
    _lose_a_grant(backend, operator, "first")  # the stream is open
    held = backend._held_keys
    held.watch_after = 0.0
    grants = [backend.acquire(f"lock-{i}", timeout=PROMPT) for i in range(200)]
    held._take_due(held._requests)  # no watch is deferred: the new stream creates them all
    seen: dict[str, int] = {}
    measured = threading.Event()
    real_watch = held.conn.watch

    def measuring(requests: Iterator[Any]) -> Iterator[Any]:
        try:
            first = next(requests)
            with held._lock:  # the creates of the new stream are queued by now
                queue = held._requests
                seen["queued"] = queue.qsize() if queue is not None else -1
            seen["messages"] = live_messages(type(etcdrpc.WatchRequest()))
        finally:
            measured.set()
        yield first
        yield from requests

    monkeypatch.setattr(held.conn, "watch", lambda requests, timeout=None: real_watch(measuring(requests), timeout))
    with held._lock:
        call = held._call
    call.cancel()  # as when the connection moves to another member
    assert measured.wait(PROMPT), "the stream was not opened again"
    assert seen["queued"] >= 150, seen  # the creates waited in the queue
    assert seen["messages"] <= 4, seen
    told = _lost(grants[7])  # the creates still work
    operator.delete_prefix(backend.lock_prefix("lock-7"))
    assert told.wait(PROMPT), "the loss was not reported by the watch"
