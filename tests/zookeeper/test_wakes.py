"""Requests sent together wake kazoo's connection thread once
(backends/zookeeper/wakes.py): one send of one byte per request at the end of the block,
other threads unaffected, and a failed wake-up fails the requests it was for."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.exceptions import ConnectionClosedError
from kazoo.handlers.threading import AsyncResult, SequentialThreadingHandler

from fencing_coord.backends.zookeeper.wakes import WakeSocket, hold_wakes, wakes_together

pytestmark = pytest.mark.zookeeper


class _Sends:
    """A socket whose sends are recorded."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return self.sock.send(data)

    def close(self) -> None:
        self.sock.close()


class _Client:
    """What wakes_together reads of a kazoo client: its connection's wake-up socket."""

    def __init__(self, wake: Any) -> None:
        self._connection = type("Connection", (), {"_write_sock": wake})()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, _Sends]]:
    read_end, write_end = socket.socketpair()
    yield read_end, _Sends(write_end)
    read_end.close()
    write_end.close()


def test_the_wake_ups_of_a_block_go_out_in_one_send_with_a_byte_per_request(pair: tuple[socket.socket, _Sends]) -> None:
    read_end, sends = pair
    wake = WakeSocket(sends)
    client = _Client(wake)
    wake.send(b"\0")  # outside a block: at once
    assert sends.sent == [b"\0"]
    with wakes_together(client):
        assert wake.send(b"\0") == 1
        with wakes_together(client):  # nested: woken at the end of the outermost
            wake.send(b"\0")
        other = threading.Thread(target=wake.send, args=(b"\1",))  # another thread is not held back
        other.start()
        other.join()
        assert sends.sent == [b"\0", b"\1"]
    assert sends.sent == [b"\0", b"\1", b"\0\0"]
    assert read_end.recv(8) == b"\0\1\0\0"


def test_a_failed_wake_up_fails_the_requests_it_was_for(pair: tuple[socket.socket, _Sends]) -> None:
    _, sends = pair
    wake = WakeSocket(sends)
    handler = SequentialThreadingHandler()
    answered, waiting = AsyncResult(handler), AsyncResult(handler)
    answered.set("done")
    with wakes_together(_Client(wake)) as sent:
        wake.send(b"\0")
        wake.send(b"\0")
        sent += (answered, waiting)
        sends.close()  # the client is closed meanwhile
    assert answered.get_nowait() == "done"
    with pytest.raises(ConnectionClosedError):
        waiting.get_nowait()


def test_a_client_without_the_wake_socket_wakes_as_kazoo_does(pair: tuple[socket.socket, _Sends]) -> None:
    _, sends = pair
    with wakes_together(_Client(sends)):
        sends.send(b"\0")
        assert sends.sent == [b"\0"]


def test_hold_wakes_gives_kazoos_connection_the_wake_socket() -> None:
    handler = SequentialThreadingHandler()
    client = type("Client", (), {"handler": handler})()
    assert hold_wakes(client) is True
    read_end, write_end = handler.create_socket_pair()
    try:
        assert isinstance(write_end, WakeSocket)
        assert not isinstance(read_end, WakeSocket)
    finally:
        read_end.close()
        write_end.close()
