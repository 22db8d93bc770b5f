"""Adjustments to kazoo that it offers no public setting for: its log records under ours,
at debug level, connection attempts bounded by our timeout, the send time of each
request the server answered, a cheaper wait for its socket (:func:`poll_sockets`) and no
wait at all for bytes already there (:func:`read_without_waiting`), and watches that wake
a waiter straight from its connection thread (:func:`run_watches_at_once`)."""

from __future__ import annotations

import logging
import math
import select
import ssl
import time
from collections.abc import Callable, Sequence

from kazoo.exceptions import ConnectionDropped

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["AT_ONCE", "bound_handshakes", "kazoo_logger", "poll_select", "poll_sockets", "read_without_waiting",
           "run_watches_at_once", "stamp_replies"]

_log = logging.getLogger(__name__)


class _DebugOnly(logging.LoggerAdapter):  # type: ignore[type-arg]
    """kazoo's records, at debug level at most, under our logger: its connection chatter
    ("Connection dropped" at every retry, "Session has expired", "Transition to
    CONNECTING") is how a failure unfolds, not the failure; we report that once, as an
    error of our own."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        # kazoo logs every packet (below DEBUG): decide before anything else is done.
        level = min(level, logging.DEBUG)
        if self.logger.isEnabledFor(level):
            self.logger.log(level, msg, *args, **kwargs)


def kazoo_logger(parent: logging.Logger) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """kazoo's own messages, under ``parent``'s ``kazoo`` child, at debug level at most."""
    return _DebugOnly(parent.getChild("kazoo"), {})


def bound_handshakes(client: Any, timeout: float) -> None:
    # kazoo gives each server's TCP connect the whole session timeout, and its
    # handshake the session timeout divided by the number of hosts: a server that
    # accepts TCP but never answers (hung, paused) held connect(timeout=1) for the
    # whole ttl, and a [hung, live] host list failed instead of moving on. Each try
    # of one server is bounded by an equal share of our timeout instead, so every
    # host is tried within it; stopping the client waits for the try under way, and
    # so for at most one share. (kazoo keeps no public setting for either.)
    share = max(0.05, timeout / (len(client.hosts) + 1))
    connection = getattr(client, "_connection", None)
    invoke = getattr(connection, "_invoke", None)
    handler = client.handler
    create_connection = getattr(handler, "create_connection", None)
    if invoke is None or create_connection is None:
        _log.debug("kazoo's connection lacks _invoke or its handler create_connection; "
                   "connection attempts are bounded by kazoo's own timeouts")
        return

    def invoke_bounded(timeout: float, request: Any, xid: int | None = None) -> Any:
        return invoke(min(timeout, share), request, xid)

    def create_connection_bounded(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is not None:
            kwargs["timeout"] = min(kwargs["timeout"], share)
        return create_connection(*args, **kwargs)

    connection._invoke = invoke_bounded  # type: ignore[union-attr]
    handler.create_connection = create_connection_bounded


def stamp_replies(client: Any, answered: Callable[[float], None]) -> bool:
    """Call ``answered(sent)`` with the ``time.monotonic()`` send time of every request
    (a ping included) the server answers, and of every handshake it accepts. kazoo keeps
    no such time, so its connection's private _submit (every packet sent, with its xid),
    _read_header (every reply, by xid) and _connect (the handshake) are wrapped; all
    three run on kazoo's connection thread only. A reply read late (after a pause of
    this process) still carries its request's send time. False (nothing wrapped) when
    this kazoo lacks them."""
    connection = getattr(client, "_connection", None)
    submit = getattr(connection, "_submit", None)
    read_header = getattr(connection, "_read_header", None)
    connect = getattr(connection, "_connect", None)
    if submit is None or read_header is None or connect is None:
        return False
    sent: dict[int, float] = {}  # xid -> time.monotonic() it was sent, on this connection

    def submit_stamped(request: Any, timeout: float, xid: int | None = None) -> Any:
        if xid is not None:
            sent[xid] = time.monotonic()
        return submit(request, timeout, xid)

    def read_header_stamped(timeout: float) -> Any:
        header, buffer, offset = read_header(timeout)
        asked = sent.pop(header.xid, None)
        if asked is not None:
            answered(asked)
        return header, buffer, offset

    def connect_stamped(*args: Any) -> Any:
        sent.clear()  # a new connection numbers its requests from 1 again
        asked = time.monotonic()
        result = connect(*args)  # raises unless the server accepted the session
        answered(asked)
        return result

    connection._submit = submit_stamped  # type: ignore[union-attr]
    connection._read_header = read_header_stamped  # type: ignore[union-attr]
    connection._connect = connect_stamped  # type: ignore[union-attr]
    return True



_READABLE = select.POLLIN if hasattr(select, "poll") else 0
_WRITABLE = select.POLLOUT if hasattr(select, "poll") else 0


def poll_sockets(client: Any) -> bool:
    """Have kazoo's connection thread wait for its sockets with one ``poll()`` call
    (:func:`poll_select`) instead of its ``selector_select``, which creates, fills and
    closes an epoll selector on every wait: five system calls and about 30 us of Python
    each time, and the connection thread waits five times or more per request (a third of
    the client's CPU time per contended grant). False (kazoo's own kept) when this
    platform has no ``poll`` or the client's handler is not kazoo's threading one."""
    handler = client.handler
    if not hasattr(select, "poll") or type(handler).__name__ != "SequentialThreadingHandler":
        return False
    handler.select = poll_select
    return True


def poll_select(rlist: Sequence[Any], wlist: Sequence[Any], xlist: Sequence[Any],
                timeout: float | None = None) -> tuple[list[Any], list[Any], list[Any]]:
    """kazoo's ``selector_select`` contract with one ``poll()``: the objects of ``rlist``
    that are readable and, for the others, of ``wlist`` that are writable (an error or a
    hang-up counts as both, as for selectors), and no exceptional ones; ValueError for a
    negative ``timeout`` or an unusable descriptor, TypeError for a non-number
    ``timeout`` or an object without one."""
    if timeout is not None:
        if not isinstance(timeout, int | float):
            raise TypeError("timeout must be a number")
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    wanted: dict[int, int] = {}
    objects: dict[int, list[Any]] = {}
    for mask, group in ((_READABLE, rlist), (_WRITABLE, wlist)):
        for item in group:
            fd = _descriptor(item)
            wanted[fd] = wanted.get(fd, 0) | mask
            objects.setdefault(fd, []).append(item)
    poller = select.poll()
    for fd, mask in wanted.items():
        try:
            poller.register(fd, mask)
        except (ValueError, OSError) as exc:
            raise ValueError("Invalid event mask or fd") from exc
    readable: list[Any] = []
    writable: list[Any] = []
    for fd, events in poller.poll(None if timeout is None else math.ceil(timeout * 1e3)):
        mask = wanted[fd]
        # As selectors: any event but "writable" wakes a reader, any but "readable" a writer.
        if mask & _READABLE and events & ~_WRITABLE:
            readable.extend(objects[fd])
        elif mask & _WRITABLE and events & ~_READABLE:
            writable.extend(objects[fd])
    return readable, writable, []


def read_without_waiting(client: Any) -> bool:
    """Have kazoo's connection thread take what its socket holds already without waiting
    for it first. kazoo's ``_read`` waits (one :func:`poll_select`) before every
    ``recv``: twice per reply (its length, then its body), though the body has almost
    always come with the length, and the thread waited for the length already. Its
    socket is non-blocking, so a ``recv`` that finds nothing raises BlockingIOError at
    once: then, and for the rest of a reply that came in part, kazoo's own read waits
    as before, with the same time limit. A TLS socket keeps kazoo's read (its records
    need ``pending()``). False (kazoo's kept) when this kazoo's connection has no
    ``_read``."""
    connection = getattr(client, "_connection", None)
    read = getattr(connection, "_read", None)
    if read is None:
        return False

    def read_what_is_there(length: int, timeout: float) -> bytes:
        sock = connection._socket  # type: ignore[union-attr]
        if isinstance(sock, ssl.SSLSocket):
            return read(length, timeout)  # type: ignore[no-any-return]
        try:
            chunk: bytes | None = sock.recv(length)
        except BlockingIOError:
            chunk = None
        except OSError as exc:  # as kazoo's _socket_error_handling
            raise ConnectionDropped(f"socket connection error: {exc.strerror or exc}") from exc
        if chunk is None:  # nothing there yet: wait for it as kazoo does. Not from within the
            # except block: what kazoo's read raises must not carry the BlockingIOError as its
            # context (.tls tells a server that hung up by a ConnectionDropped without one).
            return read(length, timeout)  # type: ignore[no-any-return]
        if not chunk:
            raise ConnectionDropped("socket connection broken")
        if len(chunk) < length:
            chunk += read(length - len(chunk), timeout)
        return chunk

    connection._read = read_what_is_there  # type: ignore[union-attr]
    return True


def _descriptor(item: Any) -> int:
    if isinstance(item, int):
        fd = item
    else:
        try:
            fd = int(item.fileno())
        except (AttributeError, TypeError, ValueError):
            raise TypeError(f"Invalid file object: {item!r}") from None
    if fd < 0:
        raise TypeError(f"Invalid file descriptor: {fd}")
    return fd


#: The attribute (True) of a watch callback that :func:`run_watches_at_once` runs on
#: kazoo's connection thread: it returns at once and never blocks (it sets an event,
#: wakes an event loop or puts into an unbounded queue).
AT_ONCE = "runs_at_once"


def run_watches_at_once(client: Any) -> bool:
    """Have ``client`` (before it starts) run the watch callbacks marked :data:`AT_ONCE`
    on its connection thread as their events are read, instead of handing them to its
    callback thread: a waiter's wake-up then takes one thread hop, not two. They still
    run one at a time in the order of the events (one thread reads them all); other
    callbacks go to the callback thread as before. False (kazoo's way kept) when the
    handler has no ``dispatch_callback``."""
    handler = client.handler
    dispatch = getattr(handler, "dispatch_callback", None)
    if dispatch is None:
        return False

    def dispatch_callback(callback: Any) -> None:
        func = callback.func
        if callback.type != "watch" or not getattr(func, AT_ONCE, False):
            dispatch(callback)
            return
        try:
            func(*callback.args)
        except Exception:  # the connection thread must live on, as kazoo's workers do
            _log.exception("watch callback %r failed", func)

    handler.dispatch_callback = dispatch_callback
    return True
