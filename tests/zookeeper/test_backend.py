"""What is specific to the ZooKeeper backend, beyond the conformance suite: URLs and
options, chroot and digest credentials, the session timeout the server grants, the queue
recipe (integer sequence numbers, one watch per waiter), the tokens and the limits of the
sequence counter."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.zookeeper import ZooKeeperBackend
from fencing_coord.backends.zookeeper.aio_backend import AsyncZooKeeperBackend
from fencing_coord.backends.zookeeper.grant import ZooKeeperGrant
from fencing_coord.backends.zookeeper.names import (
    Contender,
    parse_contender,
    queue_order,
    segment,
    serial_distance,
    unsegment,
)
from fencing_coord.servers import free_port
from fencing_coord.servers.zookeeper import four_letter_word

from .conftest import ZooKeeperTarget

pytestmark = pytest.mark.zookeeper

PROMPT = 30.0
NONCE = "0123456789abcdef"


# -- the recipe's arithmetic (pure) -------------------------------------------------------------


def _node(seq: int) -> str:
    return f"_c_{NONCE}-lock-{seq:010d}"


def test_sequence_numbers_are_integers_in_serial_order_across_the_wrap() -> None:
    # ZooKeeper names the nodes with "%010d" of a signed 32-bit counter: after
    # 2147483647 comes -2147483648. As strings, "-2147483648" < "2147483646"; as plain
    # integers too; only serial arithmetic keeps the queue in creation order.
    names = [_node(2_147_483_646), _node(2_147_483_647), _node(-2_147_483_648), _node(-2_147_483_647)]
    parsed = [parse_contender(n, "lock") for n in names]
    assert all(p is not None for p in parsed)
    contenders = [p for p in parsed if p is not None]
    assert [c.seq for c in contenders] == [2_147_483_646, 2_147_483_647, -2_147_483_648, -2_147_483_647]
    shuffled = [contenders[2], contenders[0], contenders[3], contenders[1]]
    assert [c.node for c in queue_order(shuffled)] == names
    assert sorted(names) != names, "string order would be wrong here (kazoo #606)"
    assert serial_distance(-2_147_483_648, 2_147_483_647) == 1
    assert serial_distance(2_147_483_647, -2_147_483_648) == -1
    assert serial_distance(10, 7) == 3


def test_widths_do_not_matter_to_the_order() -> None:
    small, large = Contender(_node(9), NONCE, 9), Contender(f"_c_{NONCE}-lock-10", NONCE, 10)
    assert queue_order([large, small]) == [small, large]


@pytest.mark.parametrize("child", [
    "lock-0123456789abcdef", "lock-short-0000000001", f"lease-{NONCE}-0000000001",
    f"lock-{NONCE}-12a", f"lock-{NONCE}-", "x", f"lock-{NONCE.upper()}-0000000001",
    f"lock-{NONCE}-9999999999",
])
def test_foreign_children_are_not_contenders(child: str) -> None:
    assert parse_contender(child, "lock") is None


@pytest.mark.parametrize("name", ["orders", "a%b", "é", "日本", "\U0001f512", "x\ufffdy", "semi;colon", "a b"])
def test_names_escape_into_one_segment_reversibly(name: str) -> None:
    escaped = segment(name)
    assert "/" not in escaped
    assert all(ord(ch) < 0xD800 or 0xF8FF < ord(ch) < 0xFFF0 for ch in escaped)
    assert unsegment(escaped) == name


# -- URLs, options, connecting --------------------------------------------------------------------


def test_zk_alias_query_options_and_keywords(zk_standalone: ZooKeeperTarget, namespace: str) -> None:
    url = zk_standalone.url.replace("zookeeper://", "zk://") + f"?namespace={namespace}&ttl=3&randomize_hosts=false"
    with fc.connect(url, identity="me", timeout=4) as backend:
        assert isinstance(backend, ZooKeeperBackend)
        assert (backend.namespace, backend.ttl, backend.identity, backend.timeout) == (namespace, 3.0, "me", 4.0)
        assert backend.session_timeout == 3.0
        grant = backend.acquire("orders", timeout=PROMPT)
        assert backend.describe("orders").holder == "me"
        backend.release(grant)


@pytest.mark.parametrize(("suffix", "options", "words"), [
    ("?randomize_hosts=maybe", {}, "randomize_hosts"),
    ("?sequence_window=1", {}, "sequence_window"),
    ("", {"sequence_window": 2**31}, "sequence_window"),
    ("?colour=blue", {}, "colour"),
    ("/app/../etc", {}, "chroot"),
    ("?ttl=0", {}, "ttl"),
])
def test_bad_options_are_configuration_errors(
    zk_standalone: ZooKeeperTarget, suffix: str, options: dict[str, Any], words: str
) -> None:
    with pytest.raises(fc.ConfigurationError, match=words):
        fc.connect(zk_standalone.url + suffix, **options)


def test_user_without_password_is_refused(zk_standalone: ZooKeeperTarget) -> None:
    url = zk_standalone.url.replace("zookeeper://", "zookeeper://alice@")
    with pytest.raises(fc.ConfigurationError, match="user:password"):
        fc.connect(url)


def test_connect_fails_within_timeout_when_nothing_listens() -> None:
    with pytest.raises(fc.BackendUnavailable, match=r"within 1\.0 s"):
        fc.connect(f"zookeeper://127.0.0.1:{free_port()}", timeout=1)


def test_chroot_is_created_and_holds_everything(make: Any, operator: Any, namespace: str) -> None:
    backend = make(f"/apps/{namespace}")
    parent = backend.lock_path("orders")
    assert parent.startswith(f"/apps/{namespace}/fencing-coord/{namespace}/locks/")
    grant = backend.acquire("orders", timeout=PROMPT)  # creates /apps/<ns> level by level
    children = operator.get_children(parent)
    assert len(children) == 1
    assert operator.exists(f"{parent}/{children[0]}").czxid == grant.token
    assert operator.exists(f"/fencing-coord/{namespace}") is None, "wrote outside the chroot"


def test_digest_credentials_protect_the_znodes(make: Any, namespace: str) -> None:
    chroot = f"/digest-{namespace}"
    first = make(chroot, credentials="alice:s3cret")
    second = make(chroot, credentials="alice:s3cret")
    grant = first.acquire("orders", timeout=PROMPT)
    assert second.try_acquire("orders") is None  # the same user: an ordinary contender
    assert second.describe("orders").holder == first.identity
    for stranger in (make(chroot), make(chroot, credentials="mallory:guess")):
        with pytest.raises(fc.ConfigurationError, match="refused access"):
            stranger.describe("orders")
        with pytest.raises(fc.ConfigurationError, match="refused access"):
            stranger.try_acquire("orders")
    assert first.release(grant) is True


def test_session_timeout_is_what_the_server_grants(
    zk_standalone: ZooKeeperTarget, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    if zk_standalone.ensemble is None:
        pytest.skip("needs a local server with known session bounds (0.4..60 s)")
    caplog.set_level(logging.WARNING, logger="fencing_coord.backends.zookeeper")
    # The test servers accept 0.4 s (2 ticks) to 60 s.
    assert make(ttl=100).session_timeout == 60.0
    assert make(ttl=0.1).session_timeout == 0.4
    assert make(ttl=7).session_timeout == 7.0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("granted a session timeout" in m for m in messages) == 2, messages


# -- the queue ------------------------------------------------------------------------------------


def _watches_by_path(target: ZooKeeperTarget) -> dict[str, set[int]]:
    """The server's data watches: znode path -> ids of the sessions watching it (``wchp``)."""
    assert target.ensemble is not None
    answer = four_letter_word(target.ensemble.members[0].client_port, "wchp") or b""
    watches: dict[str, set[int]] = {}
    path = None
    for line in answer.decode().splitlines():
        if line.startswith("/"):
            path = line.strip()
            watches[path] = set()
        elif line.strip().startswith("0x") and path is not None:
            watches[path].add(int(line.strip(), 16))
    return watches


def test_each_waiter_watches_only_its_predecessor(zk_standalone: ZooKeeperTarget, make: Any, operator: Any) -> None:
    if zk_standalone.ensemble is None:
        pytest.skip("needs the server's four-letter words (local server)")
    holder = make()
    grant = holder.acquire("orders", timeout=PROMPT)
    waiters = [make() for _ in range(4)]
    futures = []
    for waiter in waiters:
        queued = threading.Event()
        result: list[fc.Grant] = []
        thread = threading.Thread(target=lambda w=waiter, q=queued, r=result: r.append(
            w.acquire("orders", timeout=PROMPT, on_queued=q.set)), daemon=True)
        thread.start()
        assert queued.wait(PROMPT)
        futures.append((thread, result))
    parent = holder.lock_path("orders")
    nodes = [m for m in _ordered_children(operator, parent)]
    assert len(nodes) == 5
    sessions = [holder.session_id] + [w.session_id for w in waiters]

    def watchers_settled() -> bool:
        watches = _watches_by_path(zk_standalone)
        return all(sessions[i + 1] in watches.get(f"{parent}/{nodes[i]}", set()) for i in range(4))

    # The last waiter may still be sending its watch when on_queued has fired.
    _eventually(watchers_settled)
    watches = _watches_by_path(zk_standalone)
    assert parent not in watches, "someone watches the parent: every change would wake every waiter"
    for i, node in enumerate(nodes):
        others = watches.get(f"{parent}/{node}", set()) - {sessions[i]}
        expected = {sessions[i + 1]} if i + 1 < len(nodes) else set()
        assert others == expected, f"{node} is watched by {others}, expected {expected}"
    holder.release(grant)
    for waiter, (thread, result) in zip(waiters, futures, strict=True):
        thread.join(PROMPT)
        waiter.release(result[0])


class _Requests:
    """The requests one backend's kazoo connection sends (by type name; pings and auth
    left out), recorded at the connection's ``_submit``, which every request passes."""

    def __init__(self, backend: ZooKeeperBackend | AsyncZooKeeperBackend) -> None:
        self.sent: list[str] = []
        connection = backend.kazoo_client._connection
        submit = connection._submit

        def recording(request: Any, timeout: float, xid: int | None = None) -> Any:
            if xid is not None and xid >= 0:
                self.sent.append(type(request).__name__)
            return submit(request, timeout, xid)

        connection._submit = recording

    def since(self, mark: int) -> list[str]:
        return self.sent[mark:]


def _queued_behind(waiter: ZooKeeperBackend, name: str) -> tuple[threading.Thread, list[fc.Grant]]:
    queued = threading.Event()
    result: list[fc.Grant] = []
    thread = threading.Thread(target=lambda: result.append(waiter.acquire(name, timeout=PROMPT, on_queued=queued.set)),
                              daemon=True)
    thread.start()
    assert queued.wait(PROMPT)
    return thread, result


def _watched_by(target: ZooKeeperTarget, session: int | None, path: str) -> bool:
    return session in _watches_by_path(target).get(path, set())


def test_a_next_waiter_is_granted_from_the_delete_event(zk_standalone: ZooKeeperTarget, make: Any,
                                                        operator: Any) -> None:
    """The holder's delete is the whole handoff: the waiter, whose only older contender
    was the holder, is granted on the deletion event without a request of its own (it
    used to list the queue again: one more round trip)."""
    if zk_standalone.ensemble is None:
        pytest.skip("needs the server's four-letter words (local server)")
    holder, waiter = make(), make()
    grant = holder.acquire("orders", timeout=PROMPT)
    held = holder.lock_path("orders") + "/" + _ordered_children(operator, holder.lock_path("orders"))[0]
    holder_sent, waiter_sent = _Requests(holder), _Requests(waiter)
    thread, result = _queued_behind(waiter, "orders")
    # Its watch on the holder's node is in place (the one on its own node was sent
    # before it): it only waits now.
    _eventually(lambda: _watched_by(zk_standalone, waiter.session_id, held))
    marks = len(holder_sent.sent), len(waiter_sent.sent)
    holder.release(grant)
    thread.join(PROMPT)
    assert result, "the waiter was not granted"
    assert holder_sent.since(marks[0]) == ["Delete"]
    assert waiter_sent.since(marks[1]) == []
    assert result[0].token > grant.token
    assert waiter.describe("orders").holder == waiter.identity
    assert waiter.release(result[0]) is True


def test_a_next_waiter_whose_node_was_deleted_is_not_granted_by_the_event(zk_standalone: ZooKeeperTarget,
                                                                          make: Any, operator: Any) -> None:
    """The deletion event grants only a waiter whose own node still exists: one deleted
    out of band while it waited queues again and is granted on a new node."""
    if zk_standalone.ensemble is None:
        pytest.skip("needs the server's four-letter words (local server)")
    holder, waiter = make(), make()
    grant = holder.acquire("orders", timeout=PROMPT)
    parent = holder.lock_path("orders")
    held = f"{parent}/{_ordered_children(operator, parent)[0]}"
    thread, result = _queued_behind(waiter, "orders")
    mine = f"{parent}/{_ordered_children(operator, parent)[1]}"
    _eventually(lambda: _watched_by(zk_standalone, waiter.session_id, held))
    operator.delete(mine)
    holder.release(grant)
    thread.join(PROMPT)
    assert result, "the waiter was not granted"
    taken = result[0]
    assert isinstance(taken, ZooKeeperGrant)
    assert taken.entry.path != mine
    assert operator.exists(taken.entry.path) is not None
    assert not taken.lost
    assert waiter.release(taken) is True


def _ordered_children(client: Any, parent: str) -> list[str]:
    children = client.get_children(parent)
    return sorted(children, key=lambda c: int(c.rsplit("-", 1)[1]))


def _eventually(predicate: Any) -> None:
    # For server-side state that has no event to wait on (its watch table): re-read it.
    done = threading.Event()
    for _ in range(300):
        if predicate():
            return
        done.wait(0.05)
    raise AssertionError("condition not reached")


def test_tokens_are_creation_zxids_of_the_lock_nodes(make: Any, operator: Any) -> None:
    backend, other = make(), make()
    grant = backend.acquire("orders", timeout=PROMPT)
    node = operator.get_children(backend.lock_path("orders"))[0]
    stat = operator.exists(f"{backend.lock_path('orders')}/{node}")
    assert grant.token == stat.czxid
    assert other.describe("orders").token == grant.token
    assert operator.get(f"{backend.lock_path('orders')}/{node}")[0] == backend.identity.encode()
    backend.release(grant)
    # Unrelated writes move the zxid on; tokens stay strictly increasing per lock.
    operator.create(f"/unrelated-{node}", b"x")
    later = other.acquire("orders", timeout=PROMPT)
    assert later.token > grant.token


def test_unicode_names_work_end_to_end(make: Any) -> None:
    backend = make()
    names = ["заказы", "100%", "\U0001f512 lock", "a\ufffdb"]
    grants = [backend.acquire(name, timeout=PROMPT) for name in names]
    assert backend.locks() == sorted(names)
    for name, grant in zip(names, grants, strict=True):
        assert backend.describe(name).token == grant.token
        backend.release(grant)
    assert backend.locks() == []


def test_renew_notices_a_node_deleted_out_of_band(make: Any, operator: Any) -> None:
    backend = make()
    grant = backend.acquire("orders", timeout=PROMPT)
    assert backend.renew(grant) is grant
    node = operator.get_children(backend.lock_path("orders"))[0]
    operator.delete(f"{backend.lock_path('orders')}/{node}")
    # The watch on the held node reports it without any call...
    assert grant.wait_lost(PROMPT)
    assert grant.lost_reason == f"its lock node {backend.lock_path('orders')}/{node} was deleted out of band"
    # ... and renew agrees.
    with pytest.raises(fc.LockLost, match="deleted out of band"):
        backend.renew(grant)
    assert backend.release(grant) is False


def test_close_ends_a_pending_acquire_of_another_thread(make: Any) -> None:
    holder, backend = make(), make()
    holder.acquire("orders", timeout=PROMPT)
    queued = threading.Event()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            backend.acquire("orders", timeout=PROMPT, on_queued=queued.set)
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    assert queued.wait(PROMPT)
    backend.close()
    thread.join(PROMPT)
    assert len(outcome) == 1
    assert isinstance(outcome[0], fc.InvalidArgument), outcome
    assert re.search("closed", str(outcome[0]))
    assert holder.describe("orders").waiters == ()


# -- limits of the sequence counter --------------------------------------------------------------


def test_sequence_window_refuses_then_recovers_after_the_parent_is_deleted(make: Any, operator: Any) -> None:
    holder = make()
    grant = holder.acquire("orders", timeout=PROMPT)
    # A tiny window stands in for 2^30: every try_acquire moves the counter on by 1 or 2
    # (a create; whether the delete counts depends on ZooKeeper's timing) while the holder
    # stays put, until a contender finds it more than 6 behind: at the 4th to 7th try.
    eager = make(sequence_window=6)
    refusal: fc.TokenSpaceExhausted | None = None
    tried = 0
    while refusal is None and tried < 10:
        tried += 1
        try:
            assert eager.try_acquire("orders") is None
        except fc.TokenSpaceExhausted as exc:
            refusal = exc
    assert refusal is not None, "never refused"
    assert 4 <= tried <= 7, f"refused at the wrong distance (try {tried})"
    assert "cannot order its contenders safely" in str(refusal)
    assert f"zkCli.sh deleteall {holder.lock_path('orders')}" in str(refusal)
    # The mark is sticky: everyone refuses now, whatever their window.
    fresh = make()
    with pytest.raises(fc.TokenSpaceExhausted):
        fresh.acquire("orders", timeout=PROMPT)
    assert operator.get_children(holder.lock_path("orders")) == [
        operator.get_children(holder.lock_path("orders"))[0]
    ], "a refused contender left its node behind"
    # The holder is not disturbed; it releases normally.
    assert not grant.lost
    assert holder.renew(grant) is grant
    assert holder.release(grant) is True
    with pytest.raises(fc.TokenSpaceExhausted):
        fresh.try_acquire("orders")

    # The documented recovery: delete the parent while nobody holds or waits.
    operator.delete(holder.lock_path("orders"), recursive=True)
    again = fresh.acquire("orders", timeout=PROMPT)
    assert again.token > grant.token
    assert eager.try_acquire("payments") is not None, "the window is per lock"
