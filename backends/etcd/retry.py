"""What a failed etcd request means and whether to send it again: :class:`Retry`, one
request's policy, shared by the blocking connection (:mod:`.connection`) and the asyncio
one (:mod:`.aio_connection`), which differ only in how they wait."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import grpc
from etcd3 import etcdrpc

from fencing_coord.errors import BackendUnavailable, ConfigurationError, FencingCoordError, InvalidArgument

from .wire import RETRY_CODES, LeaseNotFound, StreamEnded, details, not_applied, status_code

__all__ = ["CHANNEL_OPTIONS", "Members", "Retry"]

# gRPC channel settings: reconnect quickly after a member restarts (the default backoff
# grows to two minutes), and notice a dead peer on an idle stream. etcd refuses client
# pings more often than every 5 s (--grpc-keepalive-min-time), so ping every 10 s.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]

_log = logging.getLogger(__name__)


class Members:
    """A cluster's member addresses, which one is in use (the next one after a failure),
    and a channel to each, made on first use from ``api`` (``grpc``, or ``grpc.aio`` for
    the asyncio connection). ``timeout`` is a request's whole budget, ``attempt_timeout``
    one try's."""

    #: The gRPC API channels are made with: grpc or grpc.aio.
    api: Any = grpc

    def __init__(self, targets: list[str], *, credentials: grpc.ChannelCredentials | None, user: str | None,
                 password: str | None, timeout: float, label: str) -> None:
        self.targets = targets
        self.credentials = credentials
        self.user, self.password = user, password
        self._channels: dict[int, Any] = {}
        self._stubs: dict[tuple[int, str], Any] = {}
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._closed = False
        self.timeout = timeout
        # A single attempt may take this long before we give up on it and try again
        # (every request we retry is idempotent): long enough for a slow commit, short
        # enough to leave a paused or leaderless member within the caller's budget.
        self.attempt_timeout = max(1.0, timeout / 2)
        self.label = label
        self._lock = threading.Lock()
        self._current = 0

    @property
    def current_member(self) -> int:
        """The index (in ``targets``) of the member requests go to now."""
        return self._current

    def move_on(self, index: int) -> None:
        """Move on from member ``index`` (if it is still the one in use)."""
        with self._lock:
            if self._current == index:
                self._current = (index + 1) % len(self.targets)

    def note_failure(self, index: int, exc: grpc.RpcError) -> None:
        if status_code(exc) in RETRY_CODES:
            self.move_on(index)

    def first_try(self, budget: float | None) -> tuple[int, float, float]:
        """(member index, seconds, stop) of a request's first try, made without a
        :class:`Retry` (most requests succeed at once): what :meth:`Retry.attempt` would
        give at the request's start, and the ``stop`` for a :class:`Retry` made if it fails."""
        whole = self.timeout if budget is None else budget
        return self._current, max(0.05, min(whole, self.attempt_timeout)), time.monotonic() + whole

    def _stub(self, index: int, service: str) -> Any:
        """The ``etcdrpc`` stub of ``service`` on member ``index``."""
        stub = self._stubs.get((index, service))
        if stub is not None:
            # Without the lock: close() empties the dict first; a stub taken just before
            # fails its call with grpc's "closed channel" (see Retry.failed).
            return stub
        with self._lock:
            if self._closed:
                raise InvalidArgument(f"{self.label}: the backend is closed")
            stub = self._stubs.get((index, service))
            if stub is None:
                channel = self._channels.get(index)
                if channel is None:
                    target = self.targets[index]
                    if self.credentials is None:
                        channel = self.api.insecure_channel(target, options=CHANNEL_OPTIONS)
                    else:
                        channel = self.api.secure_channel(target, self.credentials, options=CHANNEL_OPTIONS)
                    self._channels[index] = channel
                stub = getattr(etcdrpc, service + "Stub")(channel)
                self._stubs[(index, service)] = stub
            return stub

    def _take_channels(self) -> list[Any]:
        """Close: no new stubs; the channels to close."""
        with self._lock:
            self._closed = True
            channels = list(self._channels.values())
            self._channels.clear()
            self._stubs.clear()
        return channels


class Retry:
    """The policy of one request: which member to try for how long, and after a
    failure, the pause before the next try or the error to raise (chained)."""

    __slots__ = ("authenticating", "idempotent", "members", "pause", "reauthenticated", "stop", "what")

    def __init__(self, members: Members, what: str, budget: float | None, *, idempotent: bool,
                 authenticating: bool, stop: float | None = None) -> None:
        """``stop``: the time.monotonic() the budget ends at, when the request began
        before this policy was made (a first try made without one)."""
        self.members = members
        self.what = what
        self.stop = stop if stop is not None else time.monotonic() + (members.timeout if budget is None else budget)
        self.idempotent = idempotent
        self.authenticating = authenticating
        self.reauthenticated = False
        self.pause = 0.02

    def attempt(self) -> tuple[int, float]:
        """(member index, seconds) of the next try."""
        return self.members._current, max(0.05, min(self.stop - time.monotonic(), self.members.attempt_timeout))

    def left(self) -> float:
        """Seconds left of the request's budget (for logging in again within it)."""
        return max(0.0, self.stop - time.monotonic())

    def failed(self, index: int, exc: Exception) -> float | None:
        """The try on member ``index`` raised ``exc``: seconds to pause before the next
        try, None to log in again first (then try at once); else raise the mapped error."""
        label, what = self.members.label, self.what
        if isinstance(exc, ValueError):
            if "closed channel" not in str(exc):
                raise exc
            # close() ran meanwhile (grpc: "Cannot invoke RPC on closed channel!").
            raise InvalidArgument(f"{label}: the backend is closed") from exc
        if isinstance(exc, StreamEnded):
            self.members.move_on(index)
            if time.monotonic() + self.pause >= self.stop:
                raise BackendUnavailable(f"{label}: etcd did not answer {what}: {exc}") from exc
            return self._backoff()
        if not isinstance(exc, grpc.RpcError):
            raise exc
        code, text = status_code(exc), details(exc)
        if code == grpc.StatusCode.NOT_FOUND and "lease not found" in text:
            raise LeaseNotFound(text) from exc
        if "invalid auth token" in text and not self.authenticating and not self.reauthenticated:
            # Simple tokens expire after a while without requests; log in again.
            self.reauthenticated = True
            return None
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or (
            code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
            and ("auth" in text or "user name" in text)
        ):
            raise ConfigurationError(
                f"{label}: etcd refused {what} ({text}); check the user, password "
                "and their permissions on the /fencing-coord/ prefix"
            ) from exc
        if "too large" in text or "larger than max" in text:
            raise InvalidArgument(f"{label}: etcd refused {what} as too large: {text}") from exc
        if code not in RETRY_CODES:
            raise FencingCoordError(f"{label}: etcd {what} failed: {code} {text}") from exc
        self.members.note_failure(index, exc)
        retry = self.idempotent or not_applied(exc)
        if not retry or time.monotonic() + self.pause >= self.stop:
            unknown = "" if retry else " (it may have been applied)"
            raise BackendUnavailable(f"{label}: etcd did not answer {what}{unknown}: {text}") from exc
        return self._backoff()

    def _backoff(self) -> float:
        pause, self.pause = self.pause, min(self.pause * 2, 0.5)
        return pause
