"""etcd-specific scenarios beyond the conformance suite: what the keys look like, how
many round trips a lock costs, what a waiter does when its own lease dies, and how
the URL is read."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.etcd import EtcdBackend, owner_guard, waiting
from fencing_coord.backends.etcd.waitstream import WaitWatch

from .conftest import Connect, EtcdTarget, acquire_watched, make_certificates, revoke, rpc_counts

pytestmark = pytest.mark.etcd

PROMPT = 30.0



def _in_thread(fn: object) -> Future[fc.Grant]:
    pool = ThreadPoolExecutor(max_workers=1)
    future: Future[fc.Grant] = pool.submit(fn)  # type: ignore[arg-type]
    pool.shutdown(wait=False)
    return future


# -- keys and tokens ------------------------------------------------------------------------------


def test_token_is_the_mod_revision_of_a_lease_bound_key(etcd_single: EtcdTarget, connect: Connect,
                                                       namespace: str) -> None:
    backend = connect()
    grant = backend.acquire("orders", timeout=PROMPT)
    client = etcd_single.client()
    try:
        [(value, meta)] = list(client.get_prefix(f"/fencing-coord/{namespace}/locks/orders/"))
        assert meta.key.decode().startswith(backend.lock_prefix("orders"))
        assert value.decode() == backend.identity
        assert meta.lease_id == backend.lease_id
        assert meta.mod_revision == meta.create_revision == grant.token
        backend.renew(grant)  # a keepalive; the key is not put again
        [(_, after)] = list(client.get_prefix(backend.lock_prefix("orders")))
        assert after.mod_revision == grant.token
    finally:
        client.close()


def test_tokens_come_from_the_cluster_revision(etcd_single: EtcdTarget, connect: Connect) -> None:
    backend = connect()
    client = etcd_single.client()
    try:
        client.put("/elsewhere/unrelated", "x")  # any write anywhere advances the revision
        revision = client.get("/elsewhere/unrelated")[1].mod_revision
    finally:
        client.close()
    assert backend.acquire("orders", timeout=PROMPT).token > revision


def test_ttl_is_whole_seconds_as_granted_by_etcd(connect: Connect) -> None:
    assert connect(ttl=2.5).ttl == 3.0
    tiny = connect(ttl=0.2)
    assert tiny.ttl >= 1
    assert tiny.ttl == int(tiny.ttl)


def test_locks_lists_held_and_awaited_names(connect: Connect) -> None:
    backend, other = connect(), connect()
    backend.acquire("orders", timeout=PROMPT)
    backend.acquire("payments", timeout=PROMPT)
    assert other.locks() == ["orders", "payments"]


# -- round trips ----------------------------------------------------------------------------------


def _kv_calls(target: EtcdTarget) -> dict[str, int]:
    assert target.cluster is not None
    counts = rpc_counts(target.cluster.members[0])
    return {m: counts[m] for m in ("Txn", "Range", "Put", "DeleteRange")}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {m: after[m] - before[m] for m in before if after[m] != before[m]}


def test_uncontended_acquire_and_release_are_one_request_each(etcd_single: EtcdTarget,
                                                              connect: Connect) -> None:
    if etcd_single.cluster is None:
        pytest.skip("counts requests on the server's /metrics; not available for a container")
    backend = connect()
    backend.release(backend.acquire("warm-up", timeout=PROMPT))
    start = _kv_calls(etcd_single)
    grant = backend.acquire("orders", timeout=PROMPT)
    acquired = _kv_calls(etcd_single)
    backend.release(grant)
    released = _kv_calls(etcd_single)
    assert backend.try_acquire("orders") is not None
    tried = _kv_calls(etcd_single)
    assert _delta(start, acquired) == {"Txn": 1}
    assert _delta(acquired, released) == {"DeleteRange": 1}
    assert _delta(released, tried) == {"Txn": 1}


def test_each_waiter_wakes_once_for_its_turn(etcd_single: EtcdTarget, connect: Connect) -> None:
    """No thundering herd: a release wakes only the next waiter, so each of n waiters
    costs its enqueue, at most one look while setting up its watch, and one look when
    woken (a herd would wake every waiter at every release); the first waiter, behind
    the holder, may be granted by the holder's DELETE with no look."""
    if etcd_single.cluster is None:
        pytest.skip("counts requests on the server's /metrics; not available for a container")
    holder = connect()
    waiters = [connect() for _ in range(4)]
    grant = holder.acquire("orders", timeout=PROMPT)
    start = _kv_calls(etcd_single)
    futures = []
    for client in waiters:
        queued = threading.Event()
        futures.append(_in_thread(lambda c=client, q=queued: c.acquire("orders", PROMPT, on_queued=q.set)))
        assert queued.wait(PROMPT)
    holder.release(grant)
    for client, future in zip(waiters, futures, strict=True):
        client.release(future.result(PROMPT))
    spent = _delta(start, _kv_calls(etcd_single))
    assert spent["DeleteRange"] == 5
    assert spent.get("Range", 0) == 0
    assert len(waiters) * 2 - 1 <= spent["Txn"] <= len(waiters) * 3, spent


class _WatchCall:
    """A watch call that sets ``created`` once ``count`` of its watches exist (etcd
    confirmed them on the stream), and is otherwise the call itself."""

    def __init__(self, call: Any, count: int, created: threading.Event) -> None:
        self._call = call
        self._count = count
        self._created = created

    def __iter__(self) -> Iterator[Any]:
        confirmed = 0
        for response in self._call:
            confirmed += bool(response.created)
            if confirmed == self._count:
                self._created.set()
            yield response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


def _on_watches_created(backend: EtcdBackend, count: int, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set once a watch stream of ``backend`` has ``count`` watches in place."""
    created = threading.Event()
    real_watch = backend._conn.watch

    def watch(requests: Iterator[Any], timeout: float | None = None) -> tuple[int, Any]:
        index, call = real_watch(requests, timeout)
        return index, _WatchCall(call, count, created)

    monkeypatch.setattr(backend._conn, "watch", watch)
    return created


def test_a_first_waiter_is_granted_from_the_watch_event(etcd_single: EtcdTarget, connect: Connect,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's delete is the whole handoff: the waiter behind the holder is granted
    on the DELETE event with no request of its own (issue 13). Its one watcher covers
    the holder's key and its own, so a deletion of its own key would have come first
    (see test_wait_requests for that case). It used to look once more after the event:
    1.5-2 ms of a handoff of 2.3 ms."""
    if etcd_single.cluster is None:
        pytest.skip("counts requests on the server's /metrics; not available for a container")
    holder, waiter = connect(), connect()
    grant = acquire_watched(etcd_single.cluster.members[0], holder, "orders")
    # Its watch exists, not only its stream: on a loaded machine the release could
    # otherwise overtake its creation, and the waiter look once more.
    watching = _on_watches_created(waiter, 1, monkeypatch)
    future = _in_thread(lambda: waiter.acquire("orders", PROMPT))
    assert watching.wait(PROMPT), "the waiter never watched"
    before = _kv_calls(etcd_single)
    holder.release(grant)
    taken = future.result(PROMPT)
    assert _delta(before, _kv_calls(etcd_single)) == {"DeleteRange": 1}
    assert taken.token > grant.token
    assert waiter.describe("orders").holder == waiter.identity
    waiter.release(taken)


def test_waits_share_one_watch_stream(etcd_single: EtcdTarget, connect: Connect) -> None:
    """A backend's waits add their watch to one long-lived stream (issue 13): a stream
    per wait cost gRPC a stream opened and cancelled and two threads started and ended
    per wait, which at 32 contending processes on 2 cores was more client CPU than the
    requests. Five waits in turn open one Watch stream, five before."""
    if etcd_single.cluster is None:
        pytest.skip("counts requests on the server's /metrics; not available for a container")
    member = etcd_single.cluster.members[0]
    holder, waiter = connect(), connect()
    before = rpc_counts(member)["Watch"]
    for _ in range(5):
        grant = holder.acquire("orders", timeout=PROMPT)
        queued = threading.Event()
        future = _in_thread(lambda q=queued: waiter.acquire("orders", PROMPT, on_queued=q.set))
        assert queued.wait(PROMPT)  # behind the holder: this acquire waits, with a watch
        holder.release(grant)
        waiter.release(future.result(PROMPT))
    # The waits' stream; the holder's held-keys stream too if a grant was held 0.1 s.
    assert rpc_counts(member)["Watch"] - before <= 2


def test_a_gap_look_already_due_is_made_not_waited_for(connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait behind a waiting predecessor makes its gap's look ``GAP_CHECK`` seconds
    in. When that moment has passed by the time the waiter reads on (a busy machine),
    it makes the look: it waited for its watch's next response with a negative timeout,
    and the queue's ValueError came out of ``acquire``."""
    monkeypatch.setattr(waiting, "GAP_CHECK", 1e-9)  # due before the first read
    holder, first, second = connect(), connect(), connect()
    grant = holder.acquire("orders", timeout=PROMPT)
    futures = []
    for client in (first, second):
        queued = threading.Event()
        futures.append(_in_thread(lambda c=client, q=queued: c.acquire("orders", PROMPT, on_queued=q.set)))
        assert queued.wait(PROMPT)
    holder.release(grant)
    first.release(futures[0].result(PROMPT))
    taken = futures[1].result(PROMPT)
    assert taken.token > grant.token
    second.release(taken)


# -- a waiter's own lease dies ----------------------------------------------------------------------


def test_waiter_whose_lease_is_revoked_queues_again(etcd_single: EtcdTarget, connect: Connect) -> None:
    holder, waiter = connect(), connect()
    grant = holder.acquire("orders", timeout=PROMPT)
    queued = threading.Event()
    future = _in_thread(lambda: waiter.acquire("orders", PROMPT, on_queued=queued.set))
    assert queued.wait(PROMPT)
    old_lease = revoke(etcd_single, waiter)  # the waiter's key goes with its lease
    # The waiter enqueues again with a new lease and is still served in order.
    holder.release(grant)
    taken = future.result(PROMPT)
    assert taken.token > grant.token
    assert not taken.lost
    assert waiter.lease_id not in (None, old_lease)
    assert waiter.describe("orders").holder == waiter.identity


def test_closing_wakes_a_waiter_and_leaves_no_key(connect: Connect) -> None:
    holder, waiter = connect(), connect()
    holder.acquire("orders", timeout=PROMPT)
    queued = threading.Event()
    future = _in_thread(lambda: waiter.acquire("orders", None, on_queued=queued.set))
    assert queued.wait(PROMPT)
    waiter.close()
    with pytest.raises(fc.InvalidArgument, match="closed"):
        future.result(PROMPT)
    assert holder.describe("orders").waiters == ()


def test_renew_notices_a_deleted_key(etcd_single: EtcdTarget, connect: Connect) -> None:
    backend = connect()
    grant = backend.acquire("orders", timeout=PROMPT)
    client = etcd_single.client()
    try:
        client.delete_prefix(backend.lock_prefix("orders"))  # an operator breaks the lock
    finally:
        client.close()
    with pytest.raises(fc.LockLost, match="deleted"):
        backend.renew(grant)
    assert grant.lost
    assert grant.lost_reason == "lock key deleted"
    assert backend.release(grant) is False


def test_a_deleted_key_is_reported_lost_without_a_renew(etcd_single: EtcdTarget, connect: Connect) -> None:
    """The keepalive also checks the held keys, so the holder hears of an operator's
    delete on its own, as ZooKeeper's node watches tell it."""
    backend = connect()
    grant = backend.acquire("orders", timeout=PROMPT)
    kept = backend.acquire("payments", timeout=PROMPT)
    told = threading.Event()
    grant.on_lost(lambda _grant: told.set())
    client = etcd_single.client()
    try:
        client.delete_prefix(backend.lock_prefix("orders"))  # an operator breaks one lock
    finally:
        client.close()
    assert told.wait(PROMPT), "the loss was not reported without a renew"
    assert grant.lost_reason == "lock key deleted"
    assert not kept.lost
    assert backend.renew(kept) is kept


def test_keepalive_rounds_read_no_held_key(etcd_single: EtcdTarget, connect: Connect) -> None:
    """Held keys are watched, not polled: while 50 locks are held, three keepalive
    rounds cost etcd no KV request at all (they used to read every held key)."""
    if etcd_single.cluster is None:
        pytest.skip("counts requests on the server's /metrics; not available for a container")
    member = etcd_single.cluster.members[0]
    backend = connect()
    grants = [backend.acquire(f"lock-{i}", timeout=PROMPT) for i in range(50)]
    before = rpc_counts(member)
    deadline = time.monotonic() + PROMPT
    while rpc_counts(member)["LeaseKeepAlive"] < before["LeaseKeepAlive"] + 3:  # a round per second at ttl 3
        assert time.monotonic() < deadline, "no keepalive rounds"
        time.sleep(0.05)  # polling the server's counters: no event tells of a round
    after = rpc_counts(member)
    assert {m: after[m] - before[m] for m in ("Txn", "Range")} == {"Txn": 0, "Range": 0}
    assert not any(grant.lost for grant in grants)


def test_a_deleted_key_is_reported_lost_in_a_round_trip(etcd_single: EtcdTarget, connect: Connect) -> None:
    """The watch reports an operator's delete long before a keepalive round would."""
    backend = connect(ttl=30)  # keepalive rounds every 10 s: the report cannot come from one
    grant = backend.acquire("orders", timeout=PROMPT)
    told = threading.Event()
    grant.on_lost(lambda _grant: told.set())
    client = etcd_single.client()
    try:
        client.delete_prefix(backend.lock_prefix("orders"))
    finally:
        client.close()
    assert told.wait(5.0), "the loss was not reported by the watch"
    assert grant.lost_reason == "lock key deleted"


def test_a_revoked_lease_is_reported_as_such_by_the_watch(etcd_single: EtcdTarget, connect: Connect) -> None:
    backend = connect(ttl=30)
    grant = backend.acquire("orders", timeout=PROMPT)
    told = threading.Event()
    grant.on_lost(lambda _grant: told.set())
    revoke(etcd_single, backend)
    assert told.wait(5.0), "the loss was not reported by the watch"
    assert grant.lost_reason == "lease revoked"


# -- owner_guard ------------------------------------------------------------------------------------


def test_owner_guard_fences_inside_etcd(etcd_single: EtcdTarget, connect: Connect) -> None:
    backend, other = connect(), connect()
    client = etcd_single.client()
    try:
        grant = backend.acquire("orders", timeout=PROMPT)
        ok, _ = client.transaction(compare=[owner_guard(grant)],
                                   success=[client.transactions.put("/app/orders/state", "v1")], failure=[])
        assert ok
        backend.release(grant)
        taken = other.acquire("orders", timeout=PROMPT)
        late, _ = client.transaction(compare=[owner_guard(grant)],
                                     success=[client.transactions.put("/app/orders/state", "stale")], failure=[])
        assert not late
        ok, _ = client.transaction(compare=[owner_guard(taken)],
                                   success=[client.transactions.put("/app/orders/state", "v2")], failure=[])
        assert ok
        assert client.get("/app/orders/state")[0] == b"v2"
    finally:
        client.close()


def test_owner_guard_refuses_other_grants() -> None:
    with fc.connect("memory://guard") as memory:
        with pytest.raises(fc.InvalidArgument):
            owner_guard(memory.acquire("orders"))
        with pytest.raises(fc.InvalidArgumentType):
            owner_guard("orders")


# -- the URL --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("etcd://127.0.0.1:2379/app", "namespace"),
        ("etcd://127.0.0.1:2379?ca={pem}", "etcds://"),
        ("etcds://127.0.0.1:2379?cert={pem}", "both cert= and key="),
        ("etcds://127.0.0.1:2379?ca=/nonexistent/ca.pem", "cannot read"),
        ("etcd://127.0.0.1:2379?colour=blue", "colour"),
        ("etcd://127.0.0.1:2379?ttl=soon", "ttl"),
        ("etcd://:secret@127.0.0.1:2379", "user name"),
    ],
)
def test_bad_urls_say_what_to_fix(tmp_path: Path, url: str, message: str) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not really a certificate")
    with pytest.raises(fc.ConfigurationError, match=message):
        fc.connect(url.format(pem=pem))


@pytest.mark.parametrize("option", ["ca", "cert", "key"])
def test_tls_files_that_are_not_pem_are_configuration_errors_before_grpc_sees_them(
    tmp_path: Path, option: str
) -> None:
    """Not a retryable BackendUnavailable 5 s later, and not gRPC's own error lines on
    stderr ("Could not load any root certificate", ...): the files are checked first."""
    from fencing_coord.servers import free_port

    tls = make_certificates(tmp_path)
    files = {"ca": tls.ca, "cert": tls.client_cert, "key": tls.client_key}
    bad = files[option] = tmp_path / "bad.pem"
    bad.write_bytes(b"\x00\x01 neither PEM nor text")
    url = f"etcds://127.0.0.1:{free_port()}?" + "&".join(f"{name}={path}" for name, path in files.items())
    code = ("import sys, fencing_coord as fc\n"
            "try:\n    fc.connect(sys.argv[1], timeout=1)\n"
            "except fc.ConfigurationError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=60)
    assert f"{option}= is not a PEM" in result.stdout, (result.stdout, result.stderr)
    assert result.stderr == ""


def test_nothing_listening_is_backend_unavailable() -> None:
    from fencing_coord.servers import free_port

    with pytest.raises(fc.BackendUnavailable) as info:
        fc.connect(f"etcd://127.0.0.1:{free_port()}", timeout=1)
    assert info.value.retryable
    assert info.value.__cause__ is not None  # chained from the gRPC error


def test_a_dead_member_in_the_url_is_skipped(etcd_single: EtcdTarget, namespace: str) -> None:
    from fencing_coord.config import parse_url
    from fencing_coord.servers import free_port

    host, port = parse_url(etcd_single.url).hosts[0]
    url = f"etcd://127.0.0.1:{free_port()},{host}:{port}"
    with fc.connect(url, namespace=namespace, ttl=3) as backend:
        grant = backend.acquire("orders", timeout=PROMPT)
        assert backend.release(grant) is True


def test_an_interrupt_while_a_waiter_sets_up_its_watch_ends_the_watch(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal handler that raises (``fencing-coord run`` on SIGTERM) can interrupt a
    waiter anywhere, e.g. right after its watch was created, while it registers with the
    session. The watch must still be closed, its key withdrawn, and the waits' stream
    ended when the backend closes (a request iterator left blocked kept gRPC's thread
    alive, and ``run`` hung at exit)."""
    holder, waiter = connect(), connect()
    grant = holder.acquire("orders", timeout=PROMPT)
    ended = threading.Event()
    real_watch = waiter._conn.watch

    def watch(requests: Iterator[object], timeout: float | None = None) -> object:
        def tracked() -> Iterator[object]:
            try:
                yield from requests
            finally:
                ended.set()

        return real_watch(tracked(), timeout)

    def interrupted(*_args: object) -> bool:
        raise KeyboardInterrupt  # as the signal handler would, mid-registration

    waits = waiter._waits
    watches: list[WaitWatch] = []
    real_wait_watch = waits.watch

    def wait_watch(create: object) -> WaitWatch:
        watches.append(real_wait_watch(create))
        return watches[-1]

    monkeypatch.setattr(waiter._conn, "watch", watch)
    monkeypatch.setattr(waits, "watch", wait_watch)
    monkeypatch.setattr(waiter._session, "add_waker", interrupted)
    with pytest.raises(KeyboardInterrupt):
        waiter.acquire("orders", timeout=PROMPT)
    assert len(watches) == 1
    assert watches[0].closed, "the interrupted waiter's watch was left open"
    assert holder.describe("orders").waiters == ()
    waiter.close()
    assert ended.wait(5), "the waits' stream was left open after the backend closed"
    holder.release(grant)
