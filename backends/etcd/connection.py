"""The connection to an etcd cluster: gRPC channels to its members, one in use at a
time and the next one after a failure, with authentication, retries within a time
budget and gRPC errors mapped to :mod:`fencing_coord.errors` (chained). Nothing from
grpc leaves the package."""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from etcd3 import etcdrpc

from fencing_coord.errors import ConfigurationError
from fencing_coord.url import BackendURL

from .retry import CHANNEL_OPTIONS, Members, Retry
from .wire import KV, StreamEnded

__all__ = ["CHANNEL_OPTIONS", "Connection", "check_pem", "connection_for", "readable_file"]

_log = logging.getLogger(__name__)

_DEFAULT_PORT = 2379

class Connection(Members):
    """gRPC channels to the cluster's members: one in use at a time, the next one after
    a failure. Authenticates, retries what may be retried within a time budget, and
    maps gRPC errors to fencing_coord errors (chained); see :class:`.retry.Retry`."""


    # -- channels ----------------------------------------------------------------------

    def close(self) -> None:
        for channel in self._take_channels():
            channel.close()

    # -- requests ----------------------------------------------------------------------

    def authenticate(self, budget: float | None = None) -> None:
        """Log in with the URL's user and password (no-op without them), within
        ``budget`` seconds (default: the ``timeout`` option)."""
        if self.user is None:
            return
        request = etcdrpc.AuthenticateRequest(name=self.user, password=self.password or "")
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

        index, seconds, stop = self.first_try(budget)
        try:
            return getattr(self._stub(index, service), method)(request, timeout=seconds, metadata=self._metadata)
        except (ValueError, StreamEnded, grpc.RpcError) as exc:
            failure: Exception = exc

        def invoke(index: int, timeout: float) -> Any:
            rpc = getattr(self._stub(index, service), method)
            return rpc(request, timeout=timeout, metadata=self._metadata)

        retry = Retry(self, f"{service}.{method}", budget, idempotent=idempotent, authenticating=authenticating,
                      stop=stop)
        return self._retry(invoke, retry, first_failure=(index, failure))

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

        ttl: int = self._retry(invoke, Retry(self, "LeaseKeepAlive", budget, idempotent=True, authenticating=False))
        return ttl

    def _retry(self, invoke: Callable[[int, float], Any], retry: Retry, *,
               first_failure: tuple[int, Exception] | None = None) -> Any:
        """Try ``invoke(member index, seconds)`` as ``retry`` says; ``first_failure``:
        (member index, error) of a try already made."""
        while True:
            if first_failure is None:
                index, seconds = retry.attempt()
                try:
                    return invoke(index, seconds)
                except (ValueError, StreamEnded, grpc.RpcError) as exc:
                    pause = retry.failed(index, exc)
            else:
                pause = retry.failed(*first_failure)
                first_failure = None
            if pause is None:
                self.authenticate(budget=retry.left())
            else:
                time.sleep(pause)

    def txn(self, request: Any, *, budget: float | None = None, idempotent: bool = True) -> Any:
        return self.call("KV", "Txn", request, budget=budget, idempotent=idempotent)

    def range(self, request: Any, *, budget: float | None = None) -> list[KV]:
        response = self.call("KV", "Range", request, budget=budget)
        return [KV.of(kv) for kv in response.kvs]

    def watch(self, requests: Iterator[Any], timeout: float | None = None) -> tuple[int, Any]:
        """Open a watch stream on the member in use; return (member index, the call).

        The stream carries ``hasleader`` so that etcd ends it when that member loses
        its leader instead of leaving it silent. With ``timeout``, gRPC ends it after
        that many seconds (DEADLINE_EXCEEDED), with no timer thread of ours."""
        index = self._current
        stub = self._stub(index, "Watch")
        return index, stub.Watch(requests, timeout=timeout, metadata=(*self._metadata, ("hasleader", "true")))


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
