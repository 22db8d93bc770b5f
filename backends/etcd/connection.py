"""The connection to an etcd cluster: gRPC channels to its members, one in use at a
time and the next one after a failure, with authentication, retries within a time
budget and gRPC errors mapped to :mod:`fencing_coord.errors` (chained). Nothing from
grpc leaves the package."""

from __future__ import annotations

import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from etcd3 import etcdrpc

from fencing_coord.errors import BackendUnavailable, ConfigurationError, FencingCoordError, InvalidArgument
from fencing_coord.url import BackendURL

from .wire import KV, RETRY_CODES, LeaseNotFound, StreamEnded, details, not_applied, status_code

__all__ = ["Connection", "check_pem", "connection_for", "readable_file"]

_log = logging.getLogger(__name__)

_DEFAULT_PORT = 2379

# gRPC channel settings: reconnect quickly after a member restarts (the default backoff
# grows to two minutes), and notice a dead peer on an idle stream. etcd refuses client
# pings more often than every 5 s (--grpc-keepalive-min-time), so ping every 10 s.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]


class Connection:
    """gRPC channels to the cluster's members: one in use at a time, the next one after
    a failure. Authenticates, retries what may be retried within a time budget, and
    maps gRPC errors to fencing_coord errors (chained)."""

    def __init__(self, targets: list[str], *, credentials: grpc.ChannelCredentials | None,
                 user: str | None, password: str | None, timeout: float, label: str) -> None:
        self.targets = targets
        self.timeout = timeout
        # A single attempt may take this long before we give up on it and try again
        # (every request we retry is idempotent): long enough for a slow commit, short
        # enough to leave a paused or leaderless member within the caller's budget.
        self.attempt_timeout = max(1.0, timeout / 2)
        self.label = label
        self._credentials = credentials
        self._user, self._password = user, password
        self._lock = threading.Lock()
        self._channels: dict[int, grpc.Channel] = {}
        self._stubs: dict[tuple[int, str], Any] = {}
        self._current = 0
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._closed = False

    # -- channels ----------------------------------------------------------------------

    def _stub(self, index: int, service: str) -> Any:
        with self._lock:
            if self._closed:
                raise InvalidArgument(f"{self.label}: the backend is closed")
            stub = self._stubs.get((index, service))
            if stub is None:
                channel = self._channels.get(index)
                if channel is None:
                    target = self.targets[index]
                    if self._credentials is None:
                        channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
                    else:
                        channel = grpc.secure_channel(target, self._credentials, options=_CHANNEL_OPTIONS)
                    self._channels[index] = channel
                stub = getattr(etcdrpc, service + "Stub")(channel)
                self._stubs[(index, service)] = stub
            return stub

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

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels = list(self._channels.values())
            self._channels.clear()
            self._stubs.clear()
        for channel in channels:
            channel.close()

    # -- requests ----------------------------------------------------------------------

    def authenticate(self, budget: float | None = None) -> None:
        """Log in with the URL's user and password (no-op without them), within
        ``budget`` seconds (default: the ``timeout`` option)."""
        if self._user is None:
            return
        request = etcdrpc.AuthenticateRequest(name=self._user, password=self._password or "")
        response = self.call("Auth", "Authenticate", request, budget=budget, authenticating=True)
        self._metadata = (("token", str(response.token)),)

    def call(self, service: str, method: str, request: Any, *, budget: float | None = None,
             idempotent: bool = True, authenticating: bool = False) -> Any:
        """Send one unary request; return the response.

        Retries on another member (or the same one after a short pause) while the
        failure is transient and ``budget`` seconds (default: the ``timeout`` option)
        last; a non-``idempotent`` request is retried only when etcd certainly did not
        apply it. Raises :class:`BackendUnavailable` (chained) when the budget runs
        out, :class:`LeaseNotFound` when etcd does not know the lease, and
        :class:`ConfigurationError` for refused credentials or permissions.
        """

        def invoke(index: int, timeout: float) -> Any:
            rpc = getattr(self._stub(index, service), method)
            return rpc(request, timeout=timeout, metadata=self._metadata)

        return self._retry(invoke, f"{service}.{method}", budget, idempotent, authenticating)

    def keepalive(self, lease_id: int, *, budget: float | None = None) -> int:
        """Refresh lease ``lease_id`` once; return its new TTL (<= 0: etcd no longer
        has it)."""
        request = etcdrpc.LeaseKeepAliveRequest(ID=lease_id)

        def invoke(index: int, timeout: float) -> int:
            # LeaseKeepAlive is a stream; one request, one answer per round is plenty
            # at a period of ttl/3 and keeps no stream state across member failures.
            stub = self._stub(index, "Lease")
            for answer in stub.LeaseKeepAlive(iter([request]), timeout=timeout, metadata=self._metadata):
                return int(answer.TTL)
            raise StreamEnded("etcd closed the keepalive stream without an answer")

        ttl: int = self._retry(invoke, "LeaseKeepAlive", budget, True, False)
        return ttl

    def _retry(self, invoke: Callable[[int, float], Any], what: str, budget: float | None,
               idempotent: bool, authenticating: bool) -> Any:
        stop = time.monotonic() + (self.timeout if budget is None else budget)
        pause = 0.02
        reauthenticated = False
        while True:
            index = self._current
            attempt = max(0.05, min(stop - time.monotonic(), self.attempt_timeout))
            try:
                return invoke(index, attempt)
            except ValueError as exc:
                if "closed channel" not in str(exc):
                    raise
                # close() ran meanwhile (grpc: "Cannot invoke RPC on closed channel!").
                raise InvalidArgument(f"{self.label}: the backend is closed") from exc
            except StreamEnded as exc:
                self.move_on(index)
                if time.monotonic() + pause >= stop:
                    raise BackendUnavailable(f"{self.label}: etcd did not answer {what}: {exc}") from exc
            except grpc.RpcError as exc:
                code, text = status_code(exc), details(exc)
                if code == grpc.StatusCode.NOT_FOUND and "lease not found" in text:
                    raise LeaseNotFound(text) from exc
                if "invalid auth token" in text and not authenticating and not reauthenticated:
                    # Simple tokens expire after a while without requests; log in again.
                    reauthenticated = True
                    self.authenticate(budget=max(0.0, stop - time.monotonic()))
                    continue
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or (
                    code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
                    and ("auth" in text or "user name" in text)
                ):
                    raise ConfigurationError(
                        f"{self.label}: etcd refused {what} ({text}); check the user, password "
                        "and their permissions on the /fencing-coord/ prefix"
                    ) from exc
                if "too large" in text or "larger than max" in text:
                    raise InvalidArgument(f"{self.label}: etcd refused {what} as too large: {text}") from exc
                if code not in RETRY_CODES:
                    raise FencingCoordError(f"{self.label}: etcd {what} failed: {code} {text}") from exc
                self.note_failure(index, exc)
                retry = idempotent or not_applied(exc)
                if not retry or time.monotonic() + pause >= stop:
                    unknown = "" if retry else " (it may have been applied)"
                    raise BackendUnavailable(f"{self.label}: etcd did not answer {what}{unknown}: {text}") from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def txn(self, request: Any, *, budget: float | None = None, idempotent: bool = True) -> Any:
        return self.call("KV", "Txn", request, budget=budget, idempotent=idempotent)

    def range(self, request: Any, *, budget: float | None = None) -> list[KV]:
        response = self.call("KV", "Range", request, budget=budget)
        return [KV.of(kv) for kv in response.kvs]

    def watch(self, requests: Iterator[Any]) -> tuple[int, Any]:
        """Open a watch stream on the member in use; return (member index, the call).

        The stream carries ``hasleader`` so that etcd ends it when that member loses
        its leader instead of leaving it silent."""
        index = self._current
        stub = self._stub(index, "Watch")
        return index, stub.Watch(requests, metadata=(*self._metadata, ("hasleader", "true")))


# -- from a URL --------------------------------------------------------------------------------


def readable_file(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise TypeError("expected the path of a PEM file")
    try:
        with open(value, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ValueError(f"cannot read {value!r}: {exc.strerror}") from exc


_PEM_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----")


def check_pem(label: str, ca: bytes | None, cert: bytes | None, key: bytes | None) -> None:
    """Raise :class:`ConfigurationError` unless ``ca`` and ``cert`` hold PEM certificates
    and ``key`` a PEM private key. Checked before gRPC sees them: given anything else,
    gRPC writes its own error lines to stderr and then fails as if the server were
    unreachable (a retryable BackendUnavailable, for a mistake no retry mends)."""
    for option, data in (("ca", ca), ("cert", cert)):
        if data is None:
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
        except (ValueError, ssl.SSLError):  # UnicodeDecodeError is a ValueError
            raise ConfigurationError(
                f"{label}: {option}= is not a PEM file of certificates (-----BEGIN CERTIFICATE----- ...)"
            ) from None
    if key is not None and not _PEM_KEY.search(key):
        raise ConfigurationError(f"{label}: key= is not a PEM private key (-----BEGIN PRIVATE KEY----- ...)")


def connection_for(url: BackendURL, timeout: float, ca: bytes | None, cert: bytes | None,
                key: bytes | None) -> Connection:
    if url.path:
        raise ConfigurationError(
            f"{url.redacted()}: etcd:// takes no path (got /{url.path}); use ?namespace= to separate applications"
        )
    credentials = None
    if url.scheme == "etcds":
        if (cert is None) != (key is None):
            raise ConfigurationError(f"{url.redacted()}: give both cert= and key= for a client certificate, or neither")
        check_pem(url.redacted(), ca, cert, key)
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    elif ca is not None or cert is not None or key is not None:
        raise ConfigurationError(f"{url.redacted()}: ca=, cert= and key= need TLS; use etcds://")
    if url.password is not None and url.username is None:
        raise ConfigurationError(f"{url.redacted()}: a password needs a user name (user:password@host)")
    targets = []
    for host, port in url.host_list(_DEFAULT_PORT):
        targets.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    label = url.redacted() or f"{url.scheme}://"
    return Connection(targets, credentials=credentials, user=url.username,
                       password=url.password if url.username is not None else None, timeout=timeout, label=label)
