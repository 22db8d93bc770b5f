"""The adjustments to kazoo (backends/zookeeper/kazoo_hooks.py) that change no protocol:
the connection thread's wait for its sockets, and the watches it runs at once."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import kazoo.handlers.threading
import pytest
from kazoo.exceptions import ConnectionDropped
from kazoo.handlers.utils import selector_select

from fencing_coord.backends.zookeeper.kazoo_hooks import poll_select, read_without_waiting

pytestmark = pytest.mark.zookeeper


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _both(*args: Any) -> tuple[Any, Any]:
    return poll_select(*args), selector_select(*args)


def test_poll_select_answers_as_kazoos_selector_select(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    ours, kazoos = _both([a], [], [], 0)
    assert ours == kazoos == ([], [], [])  # nothing to read yet
    ours, kazoos = _both([], [a], [], 0)
    assert ours == kazoos == ([], [a], [])
    b.send(b"x")
    ours, kazoos = _both([a, b], [], [], 1)
    assert ours == kazoos == ([a], [], [])
    # Waited for both ways and readable: reported readable only (the object once per list).
    ours, kazoos = _both([a], [a], [], 1)
    assert ours == kazoos == ([a, a], [], [])
    # One descriptor given twice, and as a number.
    ours, kazoos = _both([a, a.fileno()], [], [], None)
    assert ours == kazoos == ([a, a.fileno()], [], [])
    b.close()
    a.recv(1)
    ours, kazoos = _both([a], [], [], 1)  # the peer hung up: readable (recv returns b"")
    assert ours == kazoos == ([a], [], [])


def test_poll_select_refuses_what_kazoos_refuses(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    cases: list[tuple[tuple[Any, ...], type[Exception]]] = [
        (([a], [], [], -1), ValueError), (([a], [], [], "1"), TypeError),
        (([object()], [], [], 0), TypeError), (([-1], [], [], 0), TypeError)]
    for args, error in cases:
        with pytest.raises(error):
            selector_select(*args)
        with pytest.raises(error):
            poll_select(*args)
    a.close()
    with pytest.raises(TypeError):
        poll_select([a], [], [], 0)  # a closed socket's descriptor is -1


def test_the_connection_thread_never_builds_a_selector(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """kazoo's selector_select creates and closes an epoll selector per wait (five system
    calls, ~30 us); ours polls once. Counted from before the connection to after a grant
    was released: it was called about 15 times before."""
    calls = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return selector_select(*args, **kwargs)

    monkeypatch.setattr(kazoo.handlers.threading, "selector_select", counted)
    backend = make()
    assert backend.release(backend.acquire("polled", timeout=10)) is True
    assert calls == []


def test_watches_marked_at_once_run_in_the_dispatching_thread_in_order_and_others_are_queued(
        caplog: pytest.LogCaptureFixture) -> None:
    from kazoo.protocol.states import Callback

    from fencing_coord.backends.zookeeper.kazoo_hooks import AT_ONCE, run_watches_at_once

    class Client:
        handler = kazoo.handlers.threading.SequentialThreadingHandler()  # not started: nothing runs the queues

    ran: list[str] = []

    class Marked:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail
            setattr(self, AT_ONCE, True)

        def __call__(self, event: str) -> None:
            ran.append(f"{self.name}:{event}")
            if self.fail:
                raise RuntimeError("a bug in a watch")

    client = Client()
    assert run_watches_at_once(client) is True
    handler = client.handler
    handler.dispatch_callback(Callback("watch", Marked("a"), ("deleted",)))
    handler.dispatch_callback(Callback("watch", Marked("b", fail=True), ("deleted",)))  # logged, not raised
    handler.dispatch_callback(Callback("watch", Marked("c"), ("changed",)))
    handler.dispatch_callback(Callback("watch", lambda event: ran.append(f"plain:{event}"), ("deleted",)))
    handler.dispatch_callback(Callback("session", Marked("d"), ("lost",)))
    assert ran == ["a:deleted", "b:deleted", "c:changed"]
    assert handler.callback_queue.qsize() == 2  # the plain watch and the non-watch callback: kazoo's way
    assert "watch callback" in caplog.text
    assert "a bug in a watch" in caplog.text


# -- reading what the socket holds already -------------------------------------------------


class _Connection:
    """What read_without_waiting reads of kazoo's connection: its socket, and its own
    ``_read`` (recorded here: the wait-then-read it falls back to)."""

    def __init__(self, sock: Any) -> None:
        self._socket = sock
        self.waited: list[int] = []
        self.hung_up = False  # kazoo's read then finds the server gone

    def _read(self, length: int, timeout: float) -> bytes:
        self.waited.append(length)
        if self.hung_up:
            raise ConnectionDropped("socket connection broken")
        return b"w" * length  # what kazoo's read would have waited for


class _Client:
    def __init__(self, connection: _Connection) -> None:
        self._connection = connection


def _reading(sock: socket.socket) -> tuple[_Connection, Any]:
    sock.setblocking(False)  # as kazoo's connection socket
    connection = _Connection(sock)
    assert read_without_waiting(_Client(connection)) is True
    return connection, connection._read


def test_bytes_already_there_are_read_without_waiting(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    connection, read = _reading(a)
    b.send(b"\x00\x00\x00\x05hello")
    assert read(4, 1.0) == b"\x00\x00\x00\x05"
    assert read(5, 1.0) == b"hello"
    assert connection.waited == []  # kazoo's read (a poll() first) was never needed


def test_bytes_not_there_yet_or_in_part_are_waited_for_as_kazoo_does(pair: tuple[socket.socket,
                                                                               socket.socket]) -> None:
    a, b = pair
    connection, read = _reading(a)
    assert read(4, 1.0) == b"wwww"  # nothing there: kazoo's read (a poll() first)
    assert connection.waited == [4]
    b.send(b"abc")
    assert read(5, 1.0) == b"abcww"  # 3 of 5 there: kazoo's read waits for the other 2
    assert connection.waited == [4, 2]


def test_a_hang_up_found_by_kazoos_read_carries_no_context(pair: tuple[socket.socket, socket.socket]) -> None:
    """The TLS diagnosis (.tls) tells a server that hung up by a ConnectionDropped with
    neither cause nor context: the read that found nothing must not lend it its
    BlockingIOError."""
    a, _ = pair
    connection, read = _reading(a)
    connection.hung_up = True
    with pytest.raises(ConnectionDropped) as raised:
        read(4, 1.0)
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None


def test_a_closed_peer_or_a_broken_socket_drops_the_connection(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    _, read = _reading(a)
    b.close()
    with pytest.raises(ConnectionDropped, match="broken"):
        read(4, 1.0)
    a.close()
    with pytest.raises(ConnectionDropped, match="socket connection error"):
        read(4, 1.0)


def test_a_reply_already_there_costs_the_connection_thread_no_poll_before_its_reads(make: Any) -> None:
    """kazoo polled before each of a reply's two reads (its length, its body) besides the
    wait of its loop: 15 polls per acquire+release here before, about 9 now."""
    backend = make()
    assert backend.release(backend.acquire("polled", timeout=10)) is True
    handler = backend.kazoo_client.handler
    polls = []
    poll = handler.select

    def counted(*args: Any, **kwargs: Any) -> Any:
        polls.append(args)
        return poll(*args, **kwargs)

    handler.select = counted
    try:
        for _ in range(10):
            assert backend.release(backend.acquire("polled", timeout=10)) is True
    finally:
        handler.select = poll
    assert len(polls) <= 120, f"{len(polls)} polls for 10 acquire+release"
