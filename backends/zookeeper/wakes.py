"""Requests sent together wake kazoo's connection thread once: :func:`wakes_together`.

kazoo's client wakes its connection thread for every request it queues: it sends one
byte on a socket pair that the thread waits on, and the thread reads one byte back for
every request it sends. Each such send is a system call that lets go of the interpreter
lock, which the woken connection thread then takes: a caller that queued two requests in
a row (a create and the listing behind it, see :mod:`.behind`) lost the interpreter
between the two, for 0.2 to 0.5 ms on a loaded machine, and its first request was now
and then answered before the second went out. Held together, the requests are all queued
first and the thread is woken once, with one byte per request, as before.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from kazoo.exceptions import ConnectionClosedError

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["WakeSocket", "hold_wakes", "wakes_together"]

_log = logging.getLogger(__name__)


class WakeSocket:
    """The write end of kazoo's wake-up socket pair: sends at once, except the bytes a
    thread sends inside :func:`wakes_together`, which it sends in one call at the end.
    Other threads (a monitor, other callers of a blocking backend) are not held back."""

    __slots__ = ("held", "socket")

    def __init__(self, sock: Any) -> None:
        self.socket = sock
        self.held = threading.local()  # .count: bytes held back by this thread, None when not holding

    def send(self, data: bytes) -> int:
        held: int | None = getattr(self.held, "count", None)
        if held is None:
            sent: int = self.socket.send(data)
            return sent
        self.held.count = held + len(data)
        return len(data)

    def close(self) -> None:
        self.socket.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.socket, name)


def hold_wakes(client: Any) -> bool:
    """Make ``client`` (before it starts) wake its connection thread through a
    :class:`WakeSocket`. False (kazoo's own kept) when its handler makes no socket pair."""
    handler = client.handler
    make_pair = getattr(handler, "create_socket_pair", None)
    if make_pair is None:
        return False

    def create_socket_pair() -> tuple[Any, Any]:
        read_end, write_end = make_pair()
        return read_end, WakeSocket(write_end)

    handler.create_socket_pair = create_socket_pair
    return True


@contextlib.contextmanager
def wakes_together(client: Any) -> Iterator[list[Any]]:
    """Hold back the wake-ups of the requests this thread sends on ``client`` inside the
    block, and wake the connection thread once at its end (exception or not). Yields a
    list for the results of those requests: if that wake-up fails (the client was closed
    meanwhile), those not answered fail with kazoo's ConnectionClosedError, as a request
    kazoo cannot wake for does. Nested blocks wake at the end of the outermost; on a
    client without :func:`hold_wakes`, every request wakes as kazoo does."""
    sent: list[Any] = []
    wake = getattr(getattr(client, "_connection", None), "_write_sock", None)
    if not isinstance(wake, WakeSocket) or getattr(wake.held, "count", None) is not None:
        yield sent
        return
    wake.held.count = 0
    try:
        yield sent
    finally:
        count, wake.held.count = wake.held.count, None
        if count:
            try:
                wake.socket.send(b"\0" * count)
            except OSError as exc:
                _log.debug("waking kazoo's connection thread failed (%r): the client was closed", exc)
                for result in sent:
                    if not result.ready():
                        result.set_exception(ConnectionClosedError("Connection has been closed"))
