"""``zookeeper://`` -- locks and leader elections with fencing tokens on ZooKeeper, through kazoo.

Layout (every path below the URL's chroot)::

    /fencing-coord/<namespace>/locks/<name>/            persistent parent, never deleted by us
    /fencing-coord/<namespace>/locks/<name>/lock-<nonce>-<seq>
                                                        one ephemeral-sequential node per contender;
                                                        data: the contender's identity (UTF-8)
    /fencing-coord/<namespace>/elections/<name>/        persistent parent, never deleted by us
    /fencing-coord/<namespace>/elections/<name>/candidate-<nonce>-<seq>
                                                        one ephemeral-sequential node per candidate;
                                                        data: b"%d:" % len(identity) + identity
                                                        + value (identity UTF-8, then the value's
                                                        raw bytes), as the etcd backend stores it
    /fencing-coord/<namespace>/resources/<resource>     ZooKeeperStore: one persistent node per
                                                        fenced resource (values and highest token)

Names are escaped into one path segment (``%XX`` for ``%`` and for characters ZooKeeper
refuses in paths, such as characters outside the Basic Multilingual Plane).

The lock recipe (ours, not kazoo's ``Lock``): a contender creates its node, lists the
parent's children, and holds the lock when no contender's sequence number precedes its
own; otherwise it watches only its immediate predecessor and, woken, lists the children
again (its own node may have vanished: it then joins the queue anew). Sequence numbers
are parsed and compared as integers, never as strings (kazoo #606), in 32-bit
serial-number arithmetic (RFC 1982), so the order stays right when the parent's counter
wraps from 2^31-1 to -2^31. The ``<nonce>`` makes every node name unique, so a create
whose answer was lost with the connection can be found again, and a node is never
confused with a namesake in a parent recreated out of band.

Tokens. A grant's token is the creation zxid (``czxid``) of its lock node: ZooKeeper's
own 64-bit transaction id, the exact analogue of etcd's create revision. Within one
parent, nodes are created (and so granted) in sequence-number order, and their czxids are
in the same order, so the token orders grants exactly as the sequence number does. Unlike
the per-parent 32-bit sequence counter, the zxid is ZooKeeper's order of all its
transactions and only grows (its high half is the leader epoch, which every election
raises): not reset by a server restart, a leader failover or a session loss, nor when a
lock's parent is deleted and created again out of band (every node of the new parent is
created after every node of the old one was deleted). Tokens fit a signed 64-bit integer, as SQLite and
PostgreSQL stores need. Only wiping the whole ensemble's data would reset them.

Limits of the sequence counter. The counter (taken from the parent's ``cversion``; it
advances with every child created, and with deletions too depending on the server's
timing) is a signed 32-bit value that wraps at 2^31-1; serial arithmetic
orders contenders correctly across the wrap as long as all live contenders of a lock lie
within 2^31 sequence numbers of each other. The backend refuses before that can fail:
when a contender finds another live contender more than ``sequence_window`` (default
2^30) sequence numbers away -- a holder or waiter that has lived through a billion queue
changes -- it marks the parent as exhausted (writes a note into the parent's data, which
is otherwise empty), withdraws, and raises :class:`TokenSpaceExhausted`; every later
attempt on that lock sees the mark and refuses too, so an ambiguous order is never acted
on. To recover, delete the lock's parent node while nobody holds or waits for it
(``zkCli.sh deleteall /fencing-coord/<ns>/locks/<name>``): tokens continue above every
earlier one, see above. The library itself never deletes a parent.

A parent deleted out of band (its children must be deleted first, so every holder's node
goes too): each holder's node watch fires, and its grant is reported lost with a reason
that names the deleted or recreated parent; a waiter joins the new parent's queue; the
new parent's tokens are larger than the old one's, so the fenced resource refuses the old
holder's late writes once the new holder has written. A backend that sees a lock's parent
with another czxid than before logs a warning.

Leader election is the same queue recipe in the ``elections`` subtree, so a lock and an
election of one name never meet: the first candidate (lowest sequence number, in serial
arithmetic) is the leader, and its term's token is its node's czxid, like a lock grant's,
with every guarantee above (its term is lost, resigned and reported exactly like a grant).
``proclaim(value)`` rewrites the leader's own node (``setData``, unversioned: only its own
session writes it, and the node's nonce makes it a path no other term ever has); the czxid,
and so the token, is unchanged. A node that is gone (session expired, deleted out of band)
makes ``proclaim`` raise :class:`LockLost` and the term is reported lost. ``leader()``
costs two round trips: ``sync`` pipelined with ``getChildren`` (so the answer reflects
every write acknowledged before the call, even through a lagging follower), then ``getData``
of the first candidate. An observer holds a child watch on the election's parent (an
``exists`` watch while the parent does not exist) and a data watch on the leader's node
(so a proclaim is seen). Watches are set again from kazoo's callbacks with asynchronous
requests (never blocking kazoo's threads), and the observer is told to read after they are
set, so no change slips between a read and the next watch; kazoo drops every watch when the
connection drops, so they are all set again, and the observers told, on every reconnection
(a change may have been missed meanwhile).

Session states (one kazoo session per backend object; kazoo reconnects on its own):

* CONNECTED: normal.
* SUSPENDED: the connection is lost; the session may still be alive, and kazoo tries every
  ensemble member in turn. Grants are kept (reconnecting to another member within the
  session timeout keeps the session, the nodes and so the grants), but their holders
  cannot know whether a successor has been granted: a careful holder pauses writes while
  ``backend.suspended`` is True (the fenced resource protects it regardless). If the
  connection stays lost for a whole (negotiated) session timeout, the server has most
  likely expired the session (it does once it has not heard from the client for that
  long), and a successor may hold the lock: every grant is reported lost ("session
  presumed expired"); if the session turns out to have survived (the server itself was
  unreachable or stopped), their nodes are deleted when the connection comes back.
* LOST: the server expired the session (or the client learns so on reconnecting): every
  grant is reported lost ("session expired") and its ``on_lost`` callbacks run once.
  kazoo then opens a new session, which later acquisitions use; waiters queue again on it.

``renew(grant)`` costs one round trip: it checks that the session is alive and the grant's
node still exists (the session itself is kept alive by kazoo's heartbeats); ``LockLost``
otherwise. The node of every grant held for more than 50 ms is watched, so an
out-of-band deletion is reported without a renew, within about 0.1 s (grants given up
sooner never pay for a watch: a request, and an event when they are released). kazoo
runs watch and state callbacks on its own threads; this module never blocks them (work
that needs a round trip goes to one monitor thread per backend).

Errors of kazoo are mapped at this edge: connection loss, session expiry, timeouts ->
:class:`BackendUnavailable` (after waiting up to ``timeout`` seconds for a reconnection);
``NoAuth``/``AuthFailed`` -> :class:`ConfigurationError`; all chained ``from`` the original.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, cast
from urllib.parse import unquote

from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    BadArgumentsError,
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import EventType, KazooState
from kazoo.security import CREATOR_ALL_ACL

from fencing_coord.config import BackendURL, OptionReader
from fencing_coord.election import Leader
from fencing_coord.errors import (
    BackendUnavailable,
    ConfigurationError,
    FencingCoordError,
    InvalidArgument,
    LockLost,
    TokenSpaceExhausted,
)
from fencing_coord.interface import Capabilities, Grant, LockBackend, LockState
from fencing_coord.stores.base import FencedOutcome, Store, admits

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SEQUENCE_WINDOW",
    "ROOT",
    "SessionState",
    "ZooKeeperBackend",
    "ZooKeeperStore",
]

_log = logging.getLogger("fencing_coord.backends.zookeeper")
_kazoo_log = logging.getLogger("fencing_coord.backends.zookeeper.kazoo")

DEFAULT_PORT: Final = 2181
#: Top of every path this library writes (below the URL's chroot).
ROOT: Final = "/fencing-coord"
#: Largest distance, in sequence numbers, tolerated between two live contenders.
DEFAULT_SEQUENCE_WINDOW: Final = 2**30
_SERIAL_HALF: Final = 2**31
_SERIAL_MOD: Final = 2**32
_NONCE_LENGTH: Final = 16
_LOCK_KIND: Final = "lock"
_CANDIDATE_KIND: Final = "candidate"
# What a loss reason calls a node of each kind, and what its parent belongs to.
_KIND_WORDS: Final = {_LOCK_KIND: ("lock node", "lock"), _CANDIDATE_KIND: ("candidate node", "election")}
# <kind>-<nonce>-<seq>: ZooKeeper appends the sequence number to the name we give.
_CONTENDER: Final = re.compile(r"([a-z]+)-([0-9a-f]{16})-(-?[0-9]{1,10})")
# ZooKeeper's default jute.maxbuffer is 1 MiB - 1; a larger write drops the connection.
_MAX_ZNODE_BYTES: Final = 1_000_000
# How many recent writes a resource node remembers, to tell after a connection loss
# whether our own conditional write was applied.
_RECENT_WRITES: Final = 16

# A grant's node is watched once the grant has been held this long (seconds).
_ARM_DELAY: Final = 0.05
# Lock names whose paths a backend remembers.
_PATH_CACHE_SIZE: Final = 4096
# Ticks without any grant before the monitor stops ticking.
_IDLE_TICKS: Final = 20

# kazoo failures after which the same request may succeed on a newer connection.
_RETRYABLE: Final = (ConnectionLoss, SessionExpiredError, OperationTimeoutError)


class SessionState(StrEnum):
    """The backend's view of its ZooKeeper session (see the module docstring)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"
    CLOSED = "closed"


# -- names, paths and sequence numbers ---------------------------------------------------


def _segment(text: str) -> str:
    """Escape ``text`` (an already validated name) into one ZooKeeper path segment.

    ZooKeeper refuses, besides what ``check_name`` refuses, U+FFF0..U+FFFF and every
    character outside the BMP (Java stores those as surrogates, which it refuses).
    ``%`` is escaped too, so the mapping is reversible with ``unquote``.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "%" or code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xF8FF or code >= 0xFFF0:
            out.append("".join(f"%{byte:02X}" for byte in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def _unsegment(segment: str) -> str:
    return unquote(segment)


def _candidate_data(identity: str, value: bytes) -> bytes:
    """A candidate node's data: ``b"%d:" % len(identity) + identity + value`` (identity
    UTF-8, its length in bytes in decimal), so any identity and any value round-trip."""
    raw = identity.encode("utf-8")
    return b"%d:%s%s" % (len(raw), raw, value)


def _parse_candidate(path: str, data: bytes) -> tuple[str, bytes]:
    """``(identity, value)`` from a candidate node's data; :class:`BackendUnavailable` when
    the node does not hold what :func:`_candidate_data` writes (someone else wrote it)."""
    head, colon, rest = data.partition(b":")
    if colon and head.isdigit() and int(head) <= len(rest):
        size = int(head)
        try:
            return rest[:size].decode("utf-8"), rest[size:]
        except UnicodeDecodeError:
            pass
    raise BackendUnavailable(f"{path} does not hold a fencing-coord candidate record ({data[:40]!r}...)")


def _serial_distance(a: int, b: int) -> int:
    """``a - b`` in 32-bit serial-number arithmetic: negative when ``a`` was issued
    before ``b``, correct across the counter's wrap while |a - b| < 2^31."""
    return (a - b + _SERIAL_HALF) % _SERIAL_MOD - _SERIAL_HALF


@dataclass(frozen=True)
class _Contender:
    """One child of a queue parent that follows our naming: ``<kind>-<nonce>-<seq>``."""

    node: str
    nonce: str
    seq: int


def _parse_contender(child: str, kind: str) -> _Contender | None:
    """Parse a child name; None for anything that is not one of our contenders. The
    sequence number is ZooKeeper's ``%010d`` of a signed 32-bit int (``-2147483648``
    after the wrap) and is parsed as an integer."""
    match = _CONTENDER.fullmatch(child)
    if match is None or match.group(1) != kind:
        return None
    seq = int(match.group(3))
    if not -_SERIAL_HALF <= seq < _SERIAL_HALF:
        return None
    return _Contender(child, match.group(2), seq)


def _queue_order(contenders: Sequence[_Contender]) -> list[_Contender]:
    """``contenders`` in queue order (serial arithmetic relative to any one of them;
    consistent while they all lie within the sequence window of each other)."""
    if not contenders:
        return []
    ref = contenders[0].seq
    return sorted(contenders, key=lambda c: _serial_distance(c.seq, ref))


# -- the session ---------------------------------------------------------------------------


def _remaining(limit: float, floor: float = 0.0) -> float | None:
    """Seconds left until ``limit`` (a monotonic time; infinity: None, no limit)."""
    if limit == float("inf"):
        return None
    return max(floor, limit - time.monotonic())


class _OutcomeUnknown(Exception):
    """A non-idempotent request was sent, but the connection dropped before its answer
    (raised once the connection is back, so the caller can look whether it applied)."""


@dataclass(frozen=True)
class _Stat:
    """The parts of a ZooKeeper Stat this module uses (typed, away from kazoo's Any)."""

    czxid: int
    version: int
    cversion: int
    data_length: int
    ephemeral_owner: int

    @classmethod
    def of(cls, stat: Any) -> _Stat:
        return cls(int(stat.czxid), int(stat.version), int(stat.cversion), int(stat.dataLength),
                   int(stat.ephemeralOwner))


class _Session:
    """One kazoo client, i.e. one ZooKeeper session: connection state and the one place
    where requests are sent, retried across reconnections and their errors mapped."""

    def __init__(self, hosts: str, *, session_timeout: float, timeout: float, auth: tuple[str, str] | None,
                 randomize_hosts: bool, listener: Callable[[SessionState], None]) -> None:
        self.hosts = hosts
        self.timeout = timeout
        self.requested_timeout = session_timeout
        #: The session timeout the server granted (seconds); see _hook_negotiated_timeout.
        self.negotiated_timeout = session_timeout
        self._negotiated = threading.Event()
        self.cond = threading.Condition()
        self.state = SessionState.CONNECTING
        self.epoch = 0  # number of CONNECTED transitions
        self.session_id: int | None = None
        self.suspended_at: float | None = None
        self.closed = False
        # Events of threads waiting in a queue: set on every state change and on close,
        # since kazoo does not call watches once it is stopped.
        self._wakeups: set[threading.Event] = set()
        self._listener = listener
        self.client: Any = KazooClient(
            hosts=hosts,
            timeout=session_timeout,
            auth_data=[("digest", f"{auth[0]}:{auth[1]}")] if auth else None,
            # With credentials, what we create is readable and writable by that user only.
            default_acl=CREATOR_ALL_ACL if auth else None,
            randomize_hosts=randomize_hosts,
            # Reconnect quickly (a member died; another is up); give up never.
            connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.5},
            logger=_kazoo_log,
        )
        self._hook_negotiated_timeout()
        self.client.add_listener(self._on_state)

    def _hook_negotiated_timeout(self) -> None:
        # kazoo keeps the negotiated session timeout in a local variable of its
        # connection's _connect(), which returns it as the read timeout (2/3 of it, in
        # ms). Wrap that private method to learn it; without it (another kazoo), we fall
        # back to the requested value.
        connection = getattr(self.client, "_connection", None)
        original = getattr(connection, "_connect", None)
        if original is None:
            _log.debug("kazoo has no _connection._connect; assuming the requested session timeout")
            self._negotiated.set()
            return

        def connect(*args: Any) -> Any:
            result = original(*args)
            try:
                self.negotiated_timeout = round(float(result[0]) * 1.5) / 1000.0
            finally:
                self._negotiated.set()
            return result

        connection._connect = connect  # type: ignore[union-attr]

    def start(self) -> None:
        try:
            self.client.start(timeout=self.timeout)
        except KazooTimeoutError as exc:
            raise BackendUnavailable(
                f"no ZooKeeper server at {self.hosts} accepted a session within {self.timeout} s"
            ) from exc
        except KazooException as exc:
            raise BackendUnavailable(f"connecting to ZooKeeper at {self.hosts} failed: {exc!r}") from exc
        self._negotiated.wait(self.timeout)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
            self._wake_all()
        try:
            self.client.stop()
        finally:
            self.client.close()

    def _on_state(self, state: str) -> None:
        # kazoo's connection thread: record and hand on, never block.
        with self.cond:
            if state == KazooState.CONNECTED:
                self.state = SessionState.CONNECTED
                self.epoch += 1
                client_id = self.client.client_id
                self.session_id = int(client_id[0]) if client_id else None
                self.suspended_at = None
            elif state == KazooState.SUSPENDED:
                self.state = SessionState.SUSPENDED
                self.suspended_at = time.monotonic()
            else:
                self.state = SessionState.CLOSED if self.closed else SessionState.LOST
                self.session_id = None
                self.suspended_at = None
            new = self.state
            self.cond.notify_all()
            self._wake_all()
        self._listener(new)

    def _wake_all(self) -> None:
        for event in self._wakeups:
            event.set()

    def wait_for(self, event: threading.Event, timeout: float | None) -> None:
        """Wait for ``event`` (a watch firing), a change of connection state or close."""
        with self.cond:
            if self.closed:
                return
            self._wakeups.add(event)
        try:
            event.wait(timeout)
        finally:
            with self.cond:
                self._wakeups.discard(event)

    # -- requests ----------------------------------------------------------------------

    def request(self, what: str, start: Callable[[], Any], *, budget: float | None = None,
                idempotent: bool = True, expected: tuple[type[BaseException], ...] = (),
                on_abandon: Callable[[Any], None] | None = None) -> Any:
        """Send one request (``start()`` returns kazoo's async result) and return its value.

        A lost connection is waited out for at most ``budget`` seconds (default: the
        backend's ``timeout``) and an idempotent request is sent again on the new
        connection; a non-idempotent one raises :class:`_OutcomeUnknown` once connected
        again. Exceptions in ``expected`` reach the caller unchanged; every other kazoo
        error is mapped. When the answer does not come in time, ``on_abandon(result)``
        is linked to the request's eventual completion.
        """
        limit = time.monotonic() + (self.timeout if budget is None else budget)
        last: BaseException | None = None
        while True:
            if self.state is SessionState.CONNECTED and not self.closed:
                epoch = self.epoch  # the common case, without the lock; a race only means a retry
            else:
                epoch = self._wait_connected(what, limit, last, newer_than=None)
            result = start()
            try:
                return result.get(timeout=_remaining(limit, floor=0.001))
            except expected:
                raise
            except KazooTimeoutError as exc:
                if on_abandon is not None:
                    result.rawlink(on_abandon)
                raise BackendUnavailable(f"{what}: ZooKeeper ({self.hosts}) did not answer in time") from exc
            except _RETRYABLE as exc:
                last = exc
                self._wait_connected(what, limit, exc, newer_than=epoch)
                if not idempotent:
                    raise _OutcomeUnknown(what) from exc
            except ConnectionClosedError as exc:
                raise InvalidArgument(f"{what}: the backend was closed") from exc
            except (NoAuthError, AuthFailedError) as exc:
                raise ConfigurationError(
                    f"{what}: ZooKeeper refused access ({type(exc).__name__}); check the user:password "
                    "in the URL and the ACLs of the znodes"
                ) from exc
            except BadArgumentsError as exc:
                raise InvalidArgument(f"{what}: ZooKeeper refused the arguments ({exc!r})") from exc
            except KazooException as exc:
                raise BackendUnavailable(f"{what}: ZooKeeper failed: {exc!r}") from exc

    def _wait_connected(self, what: str, limit: float, last: BaseException | None, newer_than: int | None) -> int:
        """Block until connected (on a connection newer than epoch ``newer_than``);
        return the connection's epoch. BackendUnavailable at ``limit``."""
        with self.cond:
            while self.state != SessionState.CONNECTED or (newer_than is not None and self.epoch == newer_than):
                if self.closed:
                    raise InvalidArgument(f"{what}: the backend was closed")
                remaining = _remaining(limit)
                if remaining is not None and remaining <= 0:
                    raise BackendUnavailable(
                        f"{what}: no connection to ZooKeeper ({self.hosts}) in time; state {self.state.value}"
                    ) from last
                self.cond.wait(remaining)
            return self.epoch


# -- the contender queue (locks now; elections reuse it) ---------------------------------


class _Gone(Exception):
    """Our contender node no longer exists (session expired, deleted out of band)."""


@dataclass(frozen=True)
class _Entry:
    """Our place in one queue."""

    parent: str
    node: str
    seq: int
    czxid: int
    owner: int  # the session that owns the ephemeral node

    @property
    def path(self) -> str:
        return f"{self.parent}/{self.node}"


@dataclass(frozen=True)
class _Position:
    predecessor: str | None  # child to wait on; None: first in the queue
    parent_czxid: int


@dataclass(frozen=True)
class _Member:
    """A contender as others see it: describe(), an election's leader."""

    contender: _Contender
    data: bytes
    czxid: int


class _Janitor:
    """Deletes nodes of ours that nobody will use: created after their caller gave up,
    left by a withdrawal that failed, or belonging to grants reported lost while the
    session lived on. The backend's monitor thread does the work."""

    def discard(self, path: str, owner: int | None) -> None:
        raise NotImplementedError

    def sweep(self, parent: str, nonce: str) -> None:
        raise NotImplementedError


class _ContenderQueue:
    """The fair-queue recipe on one session: enqueue, find the predecessor by integer
    sequence number, watch only it, re-check after waking, withdraw.

    ``kind`` prefixes node names (``lock``, ``candidate``) so several recipes share the
    code but never a parent.
    """

    def __init__(self, session: _Session, janitor: _Janitor, kind: str, window: int) -> None:
        self.session = session
        self.janitor = janitor
        self.kind = kind
        self.window = window

    def enqueue(self, parent: str, data: bytes) -> _Entry:
        """Create our ephemeral-sequential node under ``parent`` (made if missing)."""
        client = self.session.client
        nonce = os.urandom(_NONCE_LENGTH // 2).hex()
        prefix = f"{parent}/{self.kind}-{nonce}-"
        limit = time.monotonic() + self.session.timeout

        def late(result: Any) -> None:
            # The create was abandoned but may still succeed; never leave it behind.
            if result.successful():
                path, stat = result.value
                self.janitor.discard(path, int(stat.ephemeralOwner))

        while True:
            try:
                path, stat = self.session.request(
                    f"join the queue of {parent}",
                    lambda: client.create_async(prefix, data, ephemeral=True, sequence=True, makepath=True,
                                                include_data=True),
                    budget=max(0.0, limit - time.monotonic()), idempotent=False, on_abandon=late,
                )
            except _OutcomeUnknown:
                # The connection dropped with the create in flight. On the same session the
                # node may exist: find it by its nonce. On a new session it died with the old one.
                found = self._find(parent, nonce, limit)
                if found is not None:
                    return found
                continue
            except BackendUnavailable:
                self.janitor.sweep(parent, nonce)
                raise
            node = path.rsplit("/", 1)[1]
            contender = _parse_contender(node, self.kind)
            if contender is None:  # pragma: no cover - ZooKeeper names it for us
                raise BackendUnavailable(f"ZooKeeper named our node {path!r}, which is not <prefix><int>")
            return _Entry(parent, node, contender.seq, int(stat.czxid), int(stat.ephemeralOwner))

    def _find(self, parent: str, nonce: str, limit: float) -> _Entry | None:
        client = self.session.client
        try:
            children = self.session.request(f"look for our node in {parent}", lambda: client.get_children_async(parent),
                                            budget=max(0.0, limit - time.monotonic()), expected=(NoNodeError,))
        except NoNodeError:
            return None
        for child in children:
            contender = _parse_contender(child, self.kind)
            if contender is not None and contender.nonce == nonce:
                stat = self.session.request(f"stat {parent}/{child}",
                                            functools.partial(client.exists_async, f"{parent}/{child}"))
                if stat is not None:
                    return _Entry(parent, child, contender.seq, int(stat.czxid), int(stat.ephemeralOwner))
        return None

    def position(self, entry: _Entry, budget: float | None = None) -> _Position:
        """Our place now: the predecessor to wait on, or None when we are first.

        Raises :class:`_Gone` when our node has vanished and :class:`TokenSpaceExhausted`
        (after withdrawing) when the queue's sequence window is used up.
        """
        client = self.session.client
        try:
            children, raw_stat = self.session.request(
                f"read the queue of {entry.parent}",
                lambda: client.get_children_async(entry.parent, include_data=True),
                budget=budget, expected=(NoNodeError,),
            )
        except NoNodeError:
            raise _Gone(f"{entry.parent} no longer exists") from None
        parent_stat = _Stat.of(raw_stat)
        if entry.node not in children:
            raise _Gone(f"{entry.path} no longer exists")
        if parent_stat.data_length > 0:
            self.withdraw(entry)
            raise self._exhausted(entry.parent, self._mark(entry.parent))
        contenders = [c for c in (_parse_contender(child, self.kind) for child in children) if c is not None]
        distances = [_serial_distance(c.seq, entry.seq) for c in contenders]
        if any(abs(d) > self.window for d in distances):
            note = (f"a live contender is {max(abs(d) for d in distances)} sequence numbers away from "
                    f"{entry.node}; the window is {self.window}")
            self._set_mark(entry.parent, note)
            self.withdraw(entry)
            raise self._exhausted(entry.parent, note)
        before = [(d, c) for d, c in zip(distances, contenders, strict=True) if d < 0]
        predecessor = max(before, key=lambda pair: pair[0])[1].node if before else None
        return _Position(predecessor, parent_stat.czxid)

    def wait(self, entry: _Entry, predecessor: str, deadline: float | None) -> None:
        """Watch ``predecessor`` and return when it is gone, the connection changed, or
        ``deadline`` passed (the caller re-checks its position in every case)."""
        woke = threading.Event()

        def watch(_event: Any) -> None:  # kazoo's thread: just wake the waiter
            woke.set()

        stat = self.session.request(
            f"watch {entry.parent}/{predecessor}",
            lambda: self.session.client.exists_async(f"{entry.parent}/{predecessor}", watch=watch),
            budget=self.budget(deadline),
        )
        if stat is None:
            return
        self.session.wait_for(woke, None if deadline is None else max(0.0, deadline - time.monotonic()))

    def withdraw(self, entry: _Entry) -> bool:
        """Delete our node; True if it still existed. Never raises: a node that cannot be
        deleted now is handed to the janitor."""
        try:
            self.session.request(f"withdraw {entry.path}", lambda: self.session.client.delete_async(entry.path),
                                 expected=(NoNodeError,))
            return True
        except NoNodeError:
            return False
        except FencingCoordError as exc:
            _log.warning("could not delete %s now (%s); it will be deleted once connected", entry.path, exc)
            self.janitor.discard(entry.path, entry.owner)
            return True

    def members(self, parent: str) -> list[_Member]:
        """The parent's contenders in queue order, with their data (read again when one
        leaves while they are read, so the first one listed was really first). Like
        :meth:`head`, the listing follows a pipelined ``sync``, so it reflects every
        write acknowledged to any client before the call."""
        client = self.session.client
        members: list[_Member] = []

        def listing() -> Any:
            client.sync_async(parent)
            return client.get_children_async(parent)

        for _ in range(10):
            try:
                children = self.session.request(f"read the queue of {parent}", listing, expected=(NoNodeError,))
            except NoNodeError:
                return []
            ordered = _queue_order([c for c in (_parse_contender(x, self.kind) for x in children) if c is not None])
            # Send every read before waiting for any: one round trip, not one per contender.
            pending = [client.get_async(f"{parent}/{c.node}") for c in ordered]
            members = []
            for contender, result in zip(ordered, pending, strict=True):
                try:
                    data, stat = self.session.request(f"read {parent}/{contender.node}",
                                                      functools.partial(_same, result), expected=(NoNodeError,))
                except NoNodeError:
                    break
                members.append(_Member(contender, bytes(data), int(stat.czxid)))
            else:
                return members
        return members

    def head(self, parent: str) -> _Member | None:
        """The parent's first contender with its data, or None when there is none.

        Two round trips: ``sync`` pipelined with ``getChildren`` (requests of one session
        are served in order, so the listing reflects every write acknowledged to anyone
        before this call, even when our server is a lagging follower), then ``getData``
        of the first contender; listed again if that one left in between (each retry
        follows a real departure)."""
        client = self.session.client

        def listing() -> Any:
            client.sync_async(parent)
            return client.get_children_async(parent)

        while True:
            try:
                children = self.session.request(f"read the queue of {parent}", listing, expected=(NoNodeError,))
            except NoNodeError:
                return None
            ordered = _queue_order([c for c in (_parse_contender(x, self.kind) for x in children) if c is not None])
            if not ordered:
                return None
            first = f"{parent}/{ordered[0].node}"
            try:
                data, stat = self.session.request(f"read {first}", functools.partial(client.get_async, first),
                                                  expected=(NoNodeError,))
            except NoNodeError:
                continue
            return _Member(ordered[0], bytes(data), int(stat.czxid))

    def budget(self, deadline: float | None) -> float:
        # A waiter rides out a connection loss until its deadline, and at least `timeout`.
        if deadline is None:
            return float("inf")
        return max(self.session.timeout, deadline - time.monotonic())

    def _mark(self, parent: str) -> str:
        try:
            data, _ = self.session.request(f"read {parent}", lambda: self.session.client.get_async(parent))
            return bytes(data).decode("utf-8", "replace")
        except (FencingCoordError, NoNodeError):
            return "(the mark could not be read)"

    def _set_mark(self, parent: str, note: str) -> None:
        text = f"fencing-coord: sequence window exhausted: {note}".encode()
        try:
            self.session.request(f"mark {parent} exhausted", lambda: self.session.client.set_async(parent, text))
        except FencingCoordError as exc:  # the refusal stands; the next contender marks it
            _log.warning("could not mark %s exhausted: %s", parent, exc)

    def _exhausted(self, parent: str, note: str) -> TokenSpaceExhausted:
        what = _KIND_WORDS.get(self.kind, (self.kind, self.kind))[1]
        return TokenSpaceExhausted(
            f"{what} queue {parent} cannot order its contenders safely any more ({note}); it refuses every "
            f"attempt from now on. To continue, delete that znode while nobody holds, leads or waits in it "
            f"(zkCli.sh deleteall {parent}): tokens then continue above every earlier one."
        )


class _LeaderWatch:
    """One ``_watch_leader`` subscription: a child watch on an election's parent (an
    ``exists`` watch while the parent does not exist) and a data watch on the node of its
    first candidate, so a new leader, a resignation and a proclaim all fire one.

    Everything runs on kazoo's threads through asynchronous requests, so nothing here
    blocks them: a watch that fires sends the requests that set the watches again, and
    ``notify()`` is called once they are answered, so the read the observer then makes
    sees every change the new watches cannot report. A connection loss ends a round
    silently (kazoo drops every watch with the connection): the backend's monitor calls
    :meth:`arm` again on every reconnection, which ends with ``notify()`` in turn.
    """

    def __init__(self, client: Any, parent: str, kind: str, notify: Callable[[], None]) -> None:
        self.client = client
        self.parent = parent
        self.kind = kind
        self.notify = notify
        self.stopped = False

    def arm(self) -> None:
        """Set the watches (again) and then call ``notify()``. Never blocks."""
        if not self.stopped:
            self._send(functools.partial(self.client.get_children_async, self.parent, watch=self._fired),
                       self._listed)

    def stop(self) -> None:
        """No ``notify()`` after this; watches already set fire once more, into nothing."""
        self.stopped = True

    def _send(self, start: Callable[[], Any], then: Callable[[Any], None]) -> None:
        try:
            result = start()
        except KazooException:  # pragma: no cover - kazoo fails requests through their result
            return
        result.rawlink(then)

    def _fired(self, event: Any) -> None:
        # kazoo's watch thread. EventType.NONE: the connection was lost or closed and kazoo
        # dropped its watches; arm() runs again once connected.
        if not self.stopped and event.type != EventType.NONE:
            self.arm()

    def _failed(self, exc: BaseException) -> None:
        """End this round after a failed request."""
        if isinstance(exc, (*_RETRYABLE, ConnectionClosedError)):
            return  # re-armed on reconnection (or the backend was closed)
        _log.warning("watching the leader of %s failed: %r", self.parent, exc)
        self.notify()  # the observer's own read reports what is wrong

    def _listed(self, result: Any) -> None:
        if self.stopped:
            return
        exc = result.exception
        if isinstance(exc, NoNodeError):
            # Nobody has stood yet: be told when the parent is created.
            self._send(functools.partial(self.client.exists_async, self.parent, watch=self._fired), self._armed)
            return
        if exc is not None:
            self._failed(exc)
            return
        ordered = _queue_order([c for c in (_parse_contender(x, self.kind) for x in result.value) if c is not None])
        if not ordered:
            self.notify()
            return
        first = f"{self.parent}/{ordered[0].node}"
        self._send(functools.partial(self.client.exists_async, first, watch=self._fired), self._armed)

    def _armed(self, result: Any) -> None:
        if self.stopped:
            return
        if result.exception is not None:
            self._failed(result.exception)
            return
        self.notify()


# -- the backend ---------------------------------------------------------------------------------


@dataclass
class _Held:
    """Backend-private data of a grant (``Grant.handle``)."""

    entry: _Entry
    parent_czxid: int
    watch: Callable[[Any], None]
    granted_at: float = 0.0
    armed: bool = False  # the node's watch is set


_STOP: Final = object()


class ZooKeeperBackend(LockBackend, _Janitor):
    """Locks and leader elections on ZooKeeper:
    ``zookeeper://[user:password@]host[:port][,host[:port]...][/chroot][?options]``.

    ``zk://`` is an alias. Hosts are tried in random order (``randomize_hosts``); the port
    defaults to 2181; IPv6 hosts go in brackets. ``/chroot`` (optional) roots every path
    this backend uses at that znode, which is created if missing. ``user:password`` adds
    ZooKeeper digest credentials to the session, and every znode the backend creates then
    gets the ACL ``auth`` (all permissions for that user only); other users, anonymous
    ones included, are refused with :class:`ConfigurationError`.

    ================ ================================================================== ================
    option           meaning                                                            default
    ================ ================================================================== ================
    ttl              session timeout requested, seconds. The server clamps it to its    10
                     ``minSessionTimeout``..``maxSessionTimeout`` (by default 2 and 20
                     times ``tickTime``, i.e. 4..40 s at the default 2 s tick); the
                     granted value is ``session_timeout`` and is the one used for every
                     decision (a warning is logged when it differs from ``ttl``).
    namespace        second path segment, isolating one application                     ``default``
    timeout          seconds to wait for ZooKeeper per call, reconnections included;    5
                     also bounds ``connect``
    identity         holder identity, stored in every lock and candidate node           host:pid:random
    randomize_hosts  try the hosts in random order (``false``: in the order given)      ``true``
    sequence_window  largest distance in sequence numbers tolerated between two live    2^30
                     contenders of one lock or election before it refuses with
                     TokenSpaceExhausted
                     (see the module docstring; small values are for tests)
    ================ ================================================================== ================

    Tokens are the creation zxids of the lock and candidate nodes (see the module docstring
    for why, for the limits of the sequence counter and for elections). Sessions: see
    :class:`SessionState` and the module docstring; ``suspended`` tells a holder (or a
    leader) to pause writes.
    """

    schemes = ("zookeeper", "zk")
    capabilities = Capabilities(fifo=True, injectable_clock=False, elections=True, multiprocess=True)

    def __init__(self, hosts: str, *, chroot: str = "", ttl: float = 10.0, namespace: str = "default",
                 identity: str = "", timeout: float = 5.0, username: str | None = None, password: str | None = None,
                 randomize_hosts: bool = True, sequence_window: int = DEFAULT_SEQUENCE_WINDOW) -> None:
        """Connect to ``hosts`` (``host:port,...``); every path is put below ``chroot``
        (``/a/b`` or empty). Raises :class:`BackendUnavailable` when no server accepts a
        session within ``timeout``."""
        super().__init__(ttl=ttl, namespace=namespace, identity=identity or f"zk-client-{uuid.uuid4().hex[:8]}")
        self.timeout = timeout
        #: The chroot, applied here rather than by kazoo, so that missing levels of it are
        #: created along with our own znodes (kazoo creates only the last level).
        self.chroot = chroot.rstrip("/")
        self._root = f"{self.chroot}{ROOT}/{_segment(namespace)}"
        self._mutex = threading.Lock()
        self._live: dict[str, Grant] = {}  # node path -> grant held now
        self._doomed: dict[str, int | None] = {}  # node path -> owning session: delete when connected
        self._orphans: set[tuple[str, str]] = set()  # (parent, nonce) of creates with unknown outcome
        self._parents: dict[str, int] = {}  # queue parent path -> its czxid last seen
        self._lock_paths: dict[str, str] = {}  # lock name -> parent path (escaping is not free)
        # The monitor ticks (every _ARM_DELAY) while grants are live, to arm their watches.
        self._ticking = False
        self._last_grant = 0.0  # time.monotonic() of the last grant
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        auth = (username, password or "") if username is not None else None
        self._session = _Session(hosts, session_timeout=ttl, timeout=timeout, auth=auth,
                                 randomize_hosts=randomize_hosts, listener=self._on_session)
        self._locks = _ContenderQueue(self._session, self, _LOCK_KIND, sequence_window)
        self._candidates = _ContenderQueue(self._session, self, _CANDIDATE_KIND, sequence_window)
        self._leader_watches: set[_LeaderWatch] = set()
        self._monitor = threading.Thread(target=self._run_monitor, name="fencing-coord-zookeeper-monitor",
                                         daemon=True)
        self._session.start()
        granted = self._session.negotiated_timeout
        if abs(granted - ttl) > 0.001:
            _log.warning("ZooKeeper granted a session timeout of %.3f s instead of the requested ttl=%.3f s "
                         "(the server bounds it by minSessionTimeout/maxSessionTimeout); using %.3f s",
                         granted, ttl, granted)
        self._monitor.start()

    @classmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> ZooKeeperBackend:
        reader = OptionReader(url, options)
        common = reader.common()
        randomize = reader.get("randomize_hosts", True, _parse_bool)
        window = reader.get("sequence_window", DEFAULT_SEQUENCE_WINDOW, _parse_window)
        reader.finish()
        if url.username is not None and url.password is None:
            raise ConfigurationError(f"{url.redacted()}: digest credentials need user:password, not just a user")
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in url.host_list(DEFAULT_PORT))
        chroot = url.path.strip("/")
        parts = chroot.split("/") if chroot else []
        if any(p in ("", ".", "..") or _segment(p) != p for p in parts) or parts[:1] == ["zookeeper"]:
            raise ConfigurationError(
                f"{url.redacted()}: chroot /{chroot} is not a usable ZooKeeper path (an empty, '.' or '..' "
                "segment, a character ZooKeeper refuses, or below /zookeeper)"
            )
        return cls(hosts, chroot="/" + chroot if chroot else "", ttl=common.ttl,
                   namespace=common.namespace, identity=common.identity,
                   timeout=common.timeout, username=url.username, password=url.password,
                   randomize_hosts=randomize, sequence_window=window)

    # -- session information --------------------------------------------------------------

    @property
    def session_state(self) -> SessionState:
        """The session's state now (see :class:`SessionState`)."""
        return self._session.state

    @property
    def suspended(self) -> bool:
        """True while the connection is lost and the session may or may not be alive: a
        careful holder pauses its writes until this is False again."""
        return self._session.state in (SessionState.SUSPENDED, SessionState.LOST, SessionState.CONNECTING)

    @property
    def session_timeout(self) -> float:
        """The session timeout the server granted, seconds."""
        return self._session.negotiated_timeout

    @property
    def session_id(self) -> int | None:
        """The current session's id (None while there is none)."""
        return self._session.session_id

    @property
    def kazoo_client(self) -> Any:
        """The underlying ``kazoo.client.KazooClient`` (for tests and diagnostics; using
        kazoo's recipes on this library's paths breaks its guarantees)."""
        return self._session.client

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the session is connected; True if it is within ``timeout`` s."""
        limit = None if timeout is None else time.monotonic() + timeout
        with self._session.cond:
            while self._session.state != SessionState.CONNECTED and not self._session.closed:
                remaining = None if limit is None else limit - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._session.cond.wait(remaining)
            return self._session.state == SessionState.CONNECTED

    # -- paths ----------------------------------------------------------------------------

    def lock_path(self, name: str) -> str:
        """The persistent parent znode of lock ``name``: its full path on the server,
        chroot included (as an operator would name it in ``zkCli.sh``)."""
        path = self._lock_paths.get(name)
        if path is None:
            path = f"{self._root}/locks/{_segment(name)}"
            if len(self._lock_paths) < _PATH_CACHE_SIZE:
                self._lock_paths[name] = path
        return path

    def election_path(self, name: str) -> str:
        """The persistent parent znode of election ``name``, chroot included."""
        return f"{self._root}/elections/{_segment(name)}"

    # -- SPI --------------------------------------------------------------------------------

    def _acquire(self, name: str, deadline: float | None, on_queued: Callable[[], object] | None) -> Grant | None:
        return self._join(self._locks, self.lock_path(name), name, self.identity.encode("utf-8"), deadline,
                          on_queued)

    def _join(self, recipe: _ContenderQueue, parent: str, name: str, data: bytes, deadline: float | None,
              on_queued: Callable[[], object] | None) -> Grant | None:
        """Queue under ``parent`` with node data ``data`` until first (the grant for
        ``name``) or until ``deadline`` (withdrawn; None). Locks and elections alike."""
        queued = False
        while True:
            entry = recipe.enqueue(parent, data)
            try:
                while True:
                    position = recipe.position(entry, recipe.budget(deadline))
                    if position.predecessor is None:
                        grant = self._register(name, entry, position)
                        if grant is None:
                            raise _Gone("the session changed while acquiring")
                        return grant
                    if deadline is not None and time.monotonic() >= deadline:
                        recipe.withdraw(entry)
                        return None
                    if not queued:
                        queued = True
                        if on_queued is not None:
                            on_queued()
                    recipe.wait(entry, position.predecessor, deadline)
            except _Gone:
                # Our node vanished (session expired, deleted out of band): queue again.
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            except BaseException:
                recipe.withdraw(entry)
                raise

    def _register(self, name: str, entry: _Entry, position: _Position) -> Grant | None:
        held = _Held(entry, position.parent_czxid, watch=lambda _event: None, granted_at=time.monotonic())
        grant = Grant(name, entry.czxid, self.identity, owner=self, handle=held, probe=self._probe)

        def watch(_event: Any) -> None:  # kazoo's thread: hand the check to the monitor
            if not grant.released:
                self._tasks.put(("verify", grant))

        held.watch = watch
        with self._mutex:
            if self._session.session_id != entry.owner:
                self._doomed[entry.path] = entry.owner
                return None
            self._live[entry.path] = grant
            previous = self._parents.get(entry.parent)
            if previous is not None or len(self._parents) < _PATH_CACHE_SIZE:
                self._parents[entry.parent] = position.parent_czxid
            wake = not self._ticking
            self._ticking = True
            self._last_grant = held.granted_at
        if wake:
            self._tasks.put(("tick",))
        if previous is not None and previous != position.parent_czxid:
            _log.warning("the parent znode of %r (%s) was deleted and created again out of band "
                         "(czxid %#x -> %#x); tokens continue upward", name, entry.parent, previous,
                         position.parent_czxid)
        return grant

    def _renew(self, grant: Grant) -> None:
        held = cast(_Held, grant.handle)
        stat = self._session.request(f"renew {grant.name!r}",
                                     lambda: self._session.client.exists_async(held.entry.path))
        if stat is None or int(stat.czxid) != held.entry.czxid:
            reason = self._loss_reason(held)
            self._lose(grant, reason)
            raise LockLost(f"{grant!r} is lost: {reason}")

    def _release(self, grant: Grant) -> bool:
        held = cast(_Held, grant.handle)
        path = held.entry.path
        with self._mutex:
            live = self._live.pop(path, None) is grant
        if not live or grant.lost:
            return False
        attempts = 0

        def delete() -> Any:
            nonlocal attempts
            attempts += 1
            return self._session.client.delete_async(path)

        try:
            self._session.request(f"release {grant.name!r}", delete, expected=(NoNodeError,))
            return True
        except NoNodeError:
            # On a retry, our first delete may have gone through before the connection dropped.
            return attempts > 1 and self._session.session_id == held.entry.owner
        except BackendUnavailable as exc:
            _log.warning("releasing %r: %s; its node will be deleted once connected (or dies with the session)",
                         grant, exc)
            self.discard(path, held.entry.owner)
            return True

    def _describe(self, name: str) -> LockState:
        members = self._locks.members(self.lock_path(name))
        if not members:
            return LockState(name, None, None)
        holder, *waiters = members
        return LockState(name, _identity(holder.data), holder.czxid, tuple(_identity(m.data) for m in waiters))

    def _names(self) -> list[str]:
        client = self._session.client
        base = f"{self._root}/locks"
        try:
            children = self._session.request("list locks", lambda: client.get_children_async(base),
                                             expected=(NoNodeError,))
        except NoNodeError:
            return []
        pending = [(child, client.exists_async(f"{base}/{child}")) for child in children]
        names = []
        for child, result in pending:
            stat = self._session.request(f"stat {base}/{child}", functools.partial(_same, result))
            if stat is not None and int(stat.numChildren) > 0:
                names.append(_unsegment(child))
        return names

    def _close(self, held: list[Grant]) -> None:
        with self._mutex:
            self._live.clear()
            for watch in self._leader_watches:
                watch.stop()
            self._leader_watches.clear()
        self._tasks.put(_STOP)
        try:
            # Ending the session deletes every ephemeral node of ours in one step.
            self._session.close()
        finally:
            self._monitor.join(self.timeout)

    # -- the election SPI (see the module docstring) -----------------------------------------

    def _campaign(self, name: str, value: bytes, deadline: float | None,
                  on_queued: Callable[[], object] | None) -> Grant | None:
        return self._join(self._candidates, self.election_path(name), name, _candidate_data(self.identity, value),
                          deadline, on_queued)

    def _proclaim(self, grant: Grant, value: bytes) -> None:
        """Rewrite the leader's node with ``value`` (its czxid, the token, stays); raise
        :class:`LockLost`, and report the term lost, when the node is gone."""
        held = cast(_Held, grant.handle)
        path = held.entry.path
        data = _candidate_data(grant.holder, value)
        try:
            # Idempotent: sent again after a reconnection, it writes the same data. On a
            # new session the node died with the old one, and ZooKeeper answers NoNode.
            self._session.request(f"proclaim in {grant.name!r}",
                                  lambda: self._session.client.set_async(path, data), expected=(NoNodeError,))
        except NoNodeError:
            reason = self._loss_reason(held)
            self._lose(grant, reason)
            raise LockLost(f"{grant!r} no longer leads: {reason}") from None

    def _leader(self, name: str) -> Leader | None:
        path = self.election_path(name)
        head = self._candidates.head(path)
        if head is None:
            return None
        identity, value = _parse_candidate(f"{path}/{head.contender.node}", head.data)
        return Leader(identity, value, head.czxid)

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        watch = _LeaderWatch(self._session.client, self.election_path(name), _CANDIDATE_KIND, notify)
        with self._mutex:
            self._leader_watches.add(watch)
        watch.arm()

        def stop() -> None:
            watch.stop()
            with self._mutex:
                self._leader_watches.discard(watch)

        return stop

    # -- janitor ------------------------------------------------------------------------------

    def discard(self, path: str, owner: int | None) -> None:
        with self._mutex:
            self._doomed[path] = owner
        self._tasks.put(("tidy",))

    def sweep(self, parent: str, nonce: str) -> None:
        with self._mutex:
            self._orphans.add((parent, nonce))
        self._tasks.put(("tidy",))

    # -- session events and the monitor thread --------------------------------------------

    def _on_session(self, state: SessionState) -> None:
        # kazoo's connection thread: only bookkeeping, no requests.
        if state in (SessionState.LOST, SessionState.CLOSED):
            with self._mutex:
                lost = list(self._live.values())
                self._live.clear()
                # Ephemeral nodes died with the session.
                self._doomed.clear()
                self._orphans.clear()
            if state == SessionState.LOST:
                for grant in lost:
                    grant.mark_lost("session expired")
        self._tasks.put(("state", state))

    def _run_monitor(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=self._next_wait())
            except queue.Empty:
                task = ("tick",)
            if task is _STOP:
                return
            try:
                if task[0] == "verify":
                    self._verify(task[1])
                elif task[0] == "state" and task[1] == SessionState.CONNECTED:
                    with self._mutex:
                        grants = list(self._live.values())
                        watches = list(self._leader_watches)
                    # Observers first (asynchronous, never blocks): a change may have been
                    # missed while disconnected, and their watches are gone.
                    for watch in watches:
                        watch.arm()
                    # kazoo drops every watch when the connection drops: set them again,
                    # checking that each node survived.
                    for grant in grants:
                        self._verify(grant)
                    self._tidy()
                elif task[0] == "tidy":
                    self._tidy()
                self._presume_lost()
                self._arm_due()
            except FencingCoordError as exc:
                _log.debug("monitor task %r failed: %s", task, exc)
            except Exception:
                _log.exception("monitor task %r failed", task)

    def _next_wait(self) -> float | None:
        """How long the monitor may block: until the live grants must be presumed lost,
        or the next tick while grants are live (None: until a task arrives)."""
        waits = []
        suspended_at = self._session.suspended_at
        if suspended_at is not None and self._live:
            waits.append(max(0.0, suspended_at + self._session.negotiated_timeout - time.monotonic()))
        if self._ticking:
            waits.append(_ARM_DELAY)
        return min(waits) if waits else None

    def _arm_due(self) -> None:
        """Watch the node of every grant held for longer than _ARM_DELAY. Grants given
        up sooner never cost a watch (a request, then an event when they are released);
        an out-of-band deletion of a node is noticed within about 2 x _ARM_DELAY."""
        now = time.monotonic()
        with self._mutex:
            due = [g for g in self._live.values()
                   if not cast(_Held, g.handle).armed and now - cast(_Held, g.handle).granted_at >= _ARM_DELAY]
            if not self._live and now - self._last_grant > _IDLE_TICKS * _ARM_DELAY:
                self._ticking = False  # the next grant wakes the monitor again
        for grant in due:
            self._verify(grant)

    def _verify(self, grant: Grant) -> None:
        """Check that ``grant``'s node exists (re-arming its watch); report it lost if not."""
        held = cast(_Held, grant.handle)
        with self._mutex:
            if self._live.get(held.entry.path) is not grant:
                return
        if self._session.state != SessionState.CONNECTED:
            return  # re-verified when connected again
        stat = self._session.request(f"check {held.entry.path}",
                                     lambda: self._session.client.exists_async(held.entry.path, watch=held.watch))
        held.armed = True
        if stat is None or int(stat.czxid) != held.entry.czxid:
            self._lose(grant, self._loss_reason(held))

    def _lose(self, grant: Grant, reason: str) -> None:
        held = cast(_Held, grant.handle)
        with self._mutex:
            if self._live.get(held.entry.path) is grant:
                del self._live[held.entry.path]
        if grant.mark_lost(reason):
            _log.warning("%r lost: %s", grant, reason)

    def _loss_reason(self, held: _Held) -> str:
        """Say as precisely as can be found out why ``held``'s node is gone."""
        entry = held.entry
        if self._session.session_id != entry.owner:
            return "session expired"
        node, owner = _KIND_WORDS.get(entry.node.split("-", 1)[0], ("node", "queue"))
        gone = f"its {node} {entry.path} was deleted out of band"
        try:
            parent = self._session.request(f"check {entry.parent}",
                                           lambda: self._session.client.exists_async(entry.parent))
        except FencingCoordError:
            return gone
        if parent is None:
            return (f"{gone}, and so was the {owner}'s parent znode {entry.parent} "
                    "(tokens of a new parent continue upward)")
        if int(parent.czxid) != held.parent_czxid:
            return (f"{gone}, and the {owner}'s parent znode {entry.parent} was deleted and created again "
                    "(tokens continue upward)")
        return gone

    def _tidy(self) -> None:
        if self._session.state != SessionState.CONNECTED:
            return
        client = self._session.client
        with self._mutex:
            doomed = dict(self._doomed)
            orphans = set(self._orphans)
        for path, owner in doomed.items():
            if owner is None or owner == self._session.session_id:
                with contextlib.suppress(NoNodeError):
                    self._session.request(f"delete {path}", functools.partial(client.delete_async, path),
                                          expected=(NoNodeError,))
            with self._mutex:
                self._doomed.pop(path, None)
        for parent, nonce in orphans:
            try:
                children = self._session.request(f"list {parent}", functools.partial(client.get_children_async, parent),
                                                 expected=(NoNodeError,))
            except NoNodeError:
                children = []
            for child in children:
                # Any queue's node (``<kind>-<nonce>-<seq>``) created with this nonce.
                if child.split("-", 2)[1:2] == [nonce]:
                    with contextlib.suppress(NoNodeError):
                        self._session.request(f"delete {parent}/{child}",
                                              functools.partial(client.delete_async, f"{parent}/{child}"),
                                              expected=(NoNodeError,))
            with self._mutex:
                self._orphans.discard((parent, nonce))

    def _presume_lost(self) -> None:
        """After a whole session timeout without a connection, the server has expired the
        session (or will before we can reach it): report every grant lost now."""
        suspended_at = self._session.suspended_at
        if suspended_at is None or time.monotonic() < suspended_at + self._session.negotiated_timeout:
            return
        with self._mutex:
            lost = list(self._live.values())
            self._live.clear()
            for grant in lost:
                entry = cast(_Held, grant.handle).entry
                self._doomed[entry.path] = entry.owner
        reason = (f"session presumed expired: no connection to ZooKeeper for the whole session timeout "
                  f"({self._session.negotiated_timeout:g} s)")
        for grant in lost:
            if grant.mark_lost(reason):
                _log.warning("%r lost: %s", grant, reason)

    def _probe(self, grant: Grant) -> None:
        # Reading grant.lost: make the presumption exact even if the monitor is late.
        if self._session.suspended_at is not None:
            self._presume_lost()


def _same(value: Any) -> Any:
    """For request(): a request already sent (its async result)."""
    return value


def _identity(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_window(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an int")
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if not isinstance(number, int):
        raise TypeError(f"expected an int, not {type(value).__name__}")
    if not 2 <= number <= DEFAULT_SEQUENCE_WINDOW:
        raise ValueError(f"must be from 2 to {DEFAULT_SEQUENCE_WINDOW} (2^30), got {number}")
    return number


# -- the store -------------------------------------------------------------------------------------


@dataclass
class _Resource:
    """The content of one resource node."""

    highest: int | None
    values: dict[str, bytes]
    writes: list[str]

    @classmethod
    def decode(cls, path: str, data: bytes | None) -> _Resource:
        if not data:
            return cls(None, {}, [])
        try:
            doc = json.loads(data)
            highest = doc["highest"]
            values = {str(k): base64.b64decode(v, validate=True) for k, v in doc["values"].items()}
            writes = [str(w) for w in doc.get("writes", [])]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise ConfigurationError(f"{path} does not hold a fencing-coord resource ({exc!r})") from exc
        if highest is not None and (isinstance(highest, bool) or not isinstance(highest, int)):
            raise ConfigurationError(f"{path} holds a malformed highest token {highest!r}")
        return cls(highest, values, writes)

    def encode(self, path: str) -> bytes:
        doc = {
            "highest": self.highest,
            "values": {k: base64.b64encode(v).decode("ascii") for k, v in self.values.items()},
            "writes": self.writes[-_RECENT_WRITES:],
        }
        data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("ascii")
        if len(data) > _MAX_ZNODE_BYTES:
            raise InvalidArgument(
                f"resource {path} would hold {len(data)} bytes; a ZooKeeper znode holds at most about "
                f"{_MAX_ZNODE_BYTES} (jute.maxbuffer): keep fewer or smaller values per resource"
            )
        return data


class ZooKeeperStore(Store):
    """A fenced-resource store in ZooKeeper, sharing a :class:`ZooKeeperBackend`'s session.

    Each resource is one persistent znode, ``/fencing-coord/<namespace>/resources/<resource>``,
    holding its highest accepted token and all its values (JSON, values base64), so the
    token check and the write are one versioned compare-and-set (``setData`` with the
    version read): a concurrent writer makes it fail with ``BadVersion`` and the operation
    starts over on the new content. A fenced read that does not raise the highest token
    still confirms the version with a ``check`` transaction, so it never acts on a stale
    follower's copy. Safe across threads and processes.

    After a connection loss during the conditional write, the store reads the node again
    and recognises its own write by an id kept among the last 16 writes; if no connection
    comes back within the backend's ``timeout``, it raises :class:`BackendUnavailable` and
    the write may or may not have been applied (read the value to find out). Everything of a
    resource must fit one znode (about 1 MB, ZooKeeper's ``jute.maxbuffer``): one value may
    be up to 700 000 bytes (``max_value_size``; base64 makes it a third larger), and a write
    that would make the resource's znode too large is refused with
    :class:`InvalidArgument`. ``namespace`` defaults to the backend's.
    """

    max_value_size = 700_000

    def __init__(self, backend: ZooKeeperBackend, *, namespace: str | None = None) -> None:
        """Keep resources on ``backend``'s ZooKeeper (its session, chroot and, unless
        given, namespace). The store does not close the backend."""
        if not isinstance(backend, ZooKeeperBackend):
            raise ConfigurationError(f"ZooKeeperStore needs a ZooKeeperBackend, not {type(backend).__name__}")
        self._backend = backend
        self._session = backend._session
        space = backend.namespace if namespace is None else namespace
        self._base = f"{backend.chroot}{ROOT}/{_segment(space)}/resources"

    def __repr__(self) -> str:
        return f"ZooKeeperStore({self._base!r})"

    def _path(self, resource: str) -> str:
        return f"{self._base}/{_segment(resource)}"

    def _read(self, path: str) -> tuple[_Resource, int | None]:
        client = self._session.client
        try:
            data, stat = self._session.request(f"read {path}", lambda: client.get_async(path),
                                               expected=(NoNodeError,))
        except NoNodeError:
            return _Resource(None, {}, []), None
        return _Resource.decode(path, bytes(data)), int(stat.version)

    def _write(self, path: str, doc: _Resource, version: int | None) -> bool:
        """Compare-and-set: True if applied, False if someone else changed it first."""
        client = self._session.client
        write_id = uuid.uuid4().hex
        doc.writes.append(write_id)
        data = doc.encode(path)
        if version is None:
            start = lambda: client.create_async(path, data, makepath=True)  # noqa: E731
        else:
            start = lambda: client.set_async(path, data, version=version)  # noqa: E731
        try:
            self._session.request(f"write {path}", start, idempotent=False,
                                  expected=(BadVersionError, NodeExistsError, NoNodeError))
            return True
        except (BadVersionError, NodeExistsError, NoNodeError):
            return False
        except _OutcomeUnknown:
            current, _ = self._read(path)
            return write_id in current.writes

    def _confirm(self, path: str, version: int) -> bool:
        """True if ``path`` is still at ``version``, asked through the leader (a check
        transaction), so a read from a lagging follower is never acted on."""
        client = self._session.client

        def start() -> Any:
            transaction = client.transaction()
            transaction.check(path, version)
            return transaction.commit_async()

        results = self._session.request(f"confirm {path}", start)
        return bool(results) and results[0] is True

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        path = self._path(resource)
        while True:
            doc, version = self._read(path)
            highest = doc.highest
            if not admits(highest, token, strict):
                return FencedOutcome(False, highest)
            doc.values[key] = value
            doc.highest = token if highest is None else max(highest, token)
            if self._write(path, doc, version):
                return FencedOutcome(True, highest)

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        path = self._path(resource)
        while True:
            doc, version = self._read(path)
            highest = doc.highest
            if not admits(highest, token, strict):
                return FencedOutcome(False, highest)
            value = doc.values.get(key)
            if highest is not None and token <= highest and version is not None:
                if self._confirm(path, version):
                    return FencedOutcome(True, highest, value)
                continue
            doc.highest = token
            if self._write(path, doc, version):
                return FencedOutcome(True, highest, value)

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        path = self._path(resource)
        while True:
            doc, version = self._read(path)
            doc.values[key] = value
            if self._write(path, doc, version):
                return

    def plain_read(self, resource: str, key: str) -> bytes | None:
        doc, _ = self._read(self._path(resource))
        return doc.values.get(key)

    def highest_token(self, resource: str) -> int | None:
        path = self._path(resource)
        client = self._session.client
        # sync() first: the answer reflects every write acknowledged before this call.
        self._session.request(f"sync {path}", lambda: client.sync_async(path))
        doc, _ = self._read(path)
        return doc.highest
