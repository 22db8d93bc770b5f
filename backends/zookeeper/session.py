"""The ZooKeeper session: its states and their transitions, and the one place where
requests are sent, retried across reconnections and their errors mapped.

One kazoo client, i.e. one ZooKeeper session, per backend object; kazoo reconnects on its
own. The states (:class:`SessionState`):

* CONNECTED: normal.
* SUSPENDED: the connection is lost; the session may still be alive, and kazoo tries every
  ensemble member in turn. Grants are kept (reconnecting to another member within the
  session timeout keeps the session, the nodes and so the grants), but their holders
  cannot know whether a successor has been granted: a careful holder pauses writes while
  ``backend.suspended`` is True (the fenced resource protects it regardless).
* The local rule, whatever the state: once the server has not heard from this client for
  a whole (negotiated) session timeout (:attr:`Session.heard_at`: the send time of the
  last request or ping it answered), it has most likely expired the session (it does once
  it has not heard from the client for that long), and a successor may hold the lock: the
  monitor reports every grant lost ("session presumed expired"), at the latest on the
  first read of ``grant.lost`` (after a pause of this process, before any request); if
  the session turns out to have survived (the server itself was unreachable or stopped),
  their nodes are deleted once connected.
* LOST: the server expired the session (or the client learns so on reconnecting): every
  grant is reported lost ("session expired") and its ``on_lost`` callbacks run once.
  kazoo then opens a new session, which later acquisitions use; waiters queue again on it.
* CONNECTING before the first connection, CLOSED after ``close()``.

Errors of kazoo are mapped at this edge: connection loss, session expiry, timeouts ->
:class:`BackendUnavailable` (after waiting up to ``timeout`` seconds for a reconnection);
``NoAuth``/``AuthFailed`` -> :class:`ConfigurationError`; all chained ``from`` the original.
A TLS mistake met by the first connection is a ConfigurationError too (see :mod:`.tls`).
kazoo calls state listeners and watches on its own threads; nothing here blocks them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, KazooException, OperationTimeoutError, SessionExpiredError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState
from kazoo.security import CREATOR_ALL_ACL

from fencing_coord.errors import BackendUnavailable, FencingCoordError, InvalidArgument

from .kazoo_hooks import bound_handshakes, kazoo_logger, poll_sockets, read_without_waiting, stamp_replies
from .tls import FirstConnection, TLSOptions
from .wakes import hold_wakes

TYPE_CHECKING = False  # no ``from typing import ...`` at runtime: see fencing_coord.typeless
if TYPE_CHECKING:
    from typing import Any, Final, NamedTuple, Protocol
else:
    from fencing_coord.typeless import NamedTuple
    Protocol = object  # Wakeup is a plain class at runtime: nothing checks it there

__all__ = ["RETRYABLE", "OutcomeUnknown", "Session", "SessionState", "Stat", "Wakeup"]

_log = logging.getLogger(__name__)


#: kazoo failures after which the same request may succeed on a newer connection.
RETRYABLE: Final = (ConnectionLoss, SessionExpiredError, OperationTimeoutError)


class Wakeup(Protocol):
    """What a waiter registers to be woken on a change of state (a threading.Event, or
    an asyncio one that any thread may set)."""

    def set(self) -> None: ...


class SessionState(StrEnum):
    """The backend's view of its ZooKeeper session (see this module's docstring)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"
    CLOSED = "closed"


def _remaining(limit: float, floor: float = 0.0) -> float | None:
    """Seconds left until ``limit`` (a monotonic time; infinity: None, no limit)."""
    if limit == float("inf"):
        return None
    return max(floor, limit - time.monotonic())


class OutcomeUnknown(Exception):
    """A non-idempotent request was sent, but the connection dropped before its answer
    (raised once the connection is back, so the caller can look whether it applied)."""


class Stat(NamedTuple):
    """The parts of a ZooKeeper Stat this module uses (typed, away from kazoo's Any)."""

    czxid: int
    version: int
    cversion: int
    data_length: int
    ephemeral_owner: int

    @classmethod
    def of(cls, stat: Any) -> Stat:
        return cls(int(stat.czxid), int(stat.version), int(stat.cversion), int(stat.dataLength),
                   int(stat.ephemeralOwner))


class Session:
    """One kazoo client, i.e. one ZooKeeper session: connection state and the one place
    where requests are sent, retried across reconnections and their errors mapped."""

    def __init__(self, hosts: str, *, session_timeout: float, timeout: float, auth: tuple[str, str] | None,
                 randomize_hosts: bool, tls: TLSOptions | None = None) -> None:
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
        self._wakeups: set[Wakeup] = set()
        self._listeners: list[Callable[[SessionState], None]] = []
        self.client: Any = KazooClient(
            hosts=hosts,
            timeout=session_timeout,
            auth_data=[("digest", f"{auth[0]}:{auth[1]}")] if auth else None,
            # With credentials, what we create is readable and writable by that user only.
            default_acl=CREATOR_ALL_ACL if auth else None,
            randomize_hosts=randomize_hosts,
            # Reconnect quickly (a member died; another is up); give up never.
            connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.5},
            logger=kazoo_logger(_log),
            **(tls.kazoo_arguments() if tls is not None else {}),
        )
        self._hook_negotiated_timeout()
        # Tells TLS mistakes apart from an unreachable ensemble at start (see .tls).
        self._first_connection = FirstConnection(self.client, tls)
        self._hook_replies()
        bound_handshakes(self.client, self.timeout)
        poll_sockets(self.client)
        read_without_waiting(self.client)  # a reply's bytes already there: no poll() first
        hold_wakes(self.client)  # requests sent together wake kazoo's thread once (see .wakes)
        self.client.add_listener(self._on_state)

    def subscribe(self, listener: Callable[[SessionState], None]) -> None:
        """Call ``listener(state)`` on every transition, from kazoo's connection thread
        (it must not block). Subscribe before :meth:`start`."""
        self._listeners.append(listener)

    @property
    def suspended(self) -> bool:
        """True while there is no connection (the session may or may not be alive)."""
        return self.state in (SessionState.SUSPENDED, SessionState.LOST, SessionState.CONNECTING)

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

    def _hook_replies(self) -> None:
        # The local rule of a paused holder needs the last time the server certainly
        # heard from us: the send time of the newest request (a ping included) it has
        # answered, or of the handshake that (re)established the session (see
        # kazoo_hooks.stamp_replies). Without the hooks (another kazoo), the time a lost
        # connection was noticed stands in.
        self._answered_at: float | None = None
        self._replies_hooked = stamp_replies(self.client, self._answered)
        if not self._replies_hooked:
            _log.debug("kazoo's connection lacks _submit/_read_header/_connect; a grant is presumed lost "
                       "a session timeout after a lost connection is noticed")

    def _answered(self, asked: float) -> None:
        if self._answered_at is None or asked > self._answered_at:
            self._answered_at = asked

    @property
    def heard_at(self) -> float | None:
        """The last ``time.monotonic()`` at which the server certainly heard from this
        client (None before the first session). A server expires a session it has not
        heard from for the session timeout, so once ``heard_at + negotiated_timeout``
        has passed the session may be gone, whatever the connection's state says."""
        if self._replies_hooked:
            return self._answered_at
        return self.suspended_at

    def start(self) -> None:
        try:
            self._first_connection.start(self.timeout)
        except KazooTimeoutError as exc:
            raise BackendUnavailable(
                f"no ZooKeeper server at {self.hosts} accepted a session within {self.timeout} s"
            ) from exc
        except KazooException as exc:
            raise BackendUnavailable(f"connecting to ZooKeeper at {self.hosts} failed: {exc!r}") from exc
        self._negotiated.wait(self.timeout)

    def close(self, budget: float | None = None) -> None:
        """End the session: ZooKeeper deletes its ephemeral nodes at once. Waits at most
        ``budget`` seconds (default: the ``timeout`` option) for the server to confirm:
        kazoo's stop waits for an answer to its Close, which a hung server never sends,
        until its pings time out (2/3 of the session timeout). Past the budget, the
        client stops in the background and the server expires the session."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
            self._wake_all()
        stopper = threading.Thread(target=self._stop_client, name="fencing-coord-zookeeper-close", daemon=True)
        stopper.start()
        stopper.join(self.timeout if budget is None else budget)
        if stopper.is_alive():
            _log.debug("ZooKeeper (%s) did not confirm the end of the session in time; it ends in the background, "
                       "or expires on the server", self.hosts)

    def _stop_client(self) -> None:
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
        for listener in self._listeners:
            listener(new)

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

    def wait_connected(self, timeout: float | None) -> bool:
        """Block until connected; True if connected within ``timeout`` seconds (None:
        no limit), False at the limit or once closed."""
        limit = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self.state != SessionState.CONNECTED and not self.closed:
                remaining = None if limit is None else limit - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return self.state == SessionState.CONNECTED

    # -- requests ----------------------------------------------------------------------

    def request(self, what: str, start: Callable[[], Any], *, budget: float | None = None,
                idempotent: bool = True, expected: tuple[type[BaseException], ...] = (),
                on_abandon: Callable[[Any], None] | None = None) -> Any:
        """Send one request (``start()`` returns kazoo's async result) and return its value.

        A lost connection is waited out for at most ``budget`` seconds (default: the
        backend's ``timeout``) and an idempotent request is sent again on the new
        connection; a non-idempotent one raises :class:`OutcomeUnknown` once connected
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
            except RETRYABLE as exc:
                last = exc
                self._wait_connected(what, limit, exc, newer_than=epoch)
                if not idempotent:
                    raise OutcomeUnknown(what) from exc
            except KazooException as exc:
                from .kazoo_results import kazoo_error  # failures only: not on the path of a grant (issue 13)

                raise kazoo_error(what, exc) from exc

    def current_epoch(self) -> int:
        """The number of connections made so far (see :func:`.kazoo_results.presend`)."""
        return self.epoch

    def add_wakeup(self, event: Wakeup) -> bool:
        """Set ``event`` on every change of connection state and on close; False (not
        added) when the session is closed already."""
        with self.cond:
            if self.closed:
                return False
            self._wakeups.add(event)
            return True

    def remove_wakeup(self, event: Wakeup) -> None:
        with self.cond:
            self._wakeups.discard(event)

    def not_connected(self, what: str, last: BaseException | None = None) -> FencingCoordError:
        """The error once a request gave up waiting for a connection."""
        if self.closed:
            return InvalidArgument(f"{what}: the backend was closed")
        error = BackendUnavailable(f"{what}: no connection to ZooKeeper ({self.hosts}) in time; "
                                   f"state {self.state.value}")
        error.__cause__ = last
        return error

    def _wait_connected(self, what: str, limit: float, last: BaseException | None, newer_than: int | None) -> int:
        """Block until connected (on a connection newer than epoch ``newer_than``);
        return the connection's epoch. BackendUnavailable at ``limit``."""
        with self.cond:
            while self.state != SessionState.CONNECTED or (newer_than is not None and self.epoch == newer_than):
                remaining = _remaining(limit)
                if self.closed or (remaining is not None and remaining <= 0):
                    raise self.not_connected(what, last)
                self.cond.wait(remaining)
            return self.epoch
