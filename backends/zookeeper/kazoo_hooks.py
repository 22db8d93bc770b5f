"""Adjustments to kazoo that it offers no public setting for: its log records under ours,
at debug level, connection attempts bounded by our timeout, and the send time of each
request the server answered."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["bound_handshakes", "kazoo_logger", "stamp_replies"]

_log = logging.getLogger(__name__)


class _DebugOnly(logging.LoggerAdapter):  # type: ignore[type-arg]
    """kazoo's records, at debug level at most, under our logger: its connection chatter
    ("Connection dropped" at every retry, "Session has expired", "Transition to
    CONNECTING") is how a failure unfolds, not the failure; we report that once, as an
    error of our own."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(min(level, logging.DEBUG), msg, *args, **kwargs)


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

