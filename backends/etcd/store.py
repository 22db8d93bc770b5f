"""Fencing inside etcd: :class:`EtcdStore`, a fenced store kept in etcd, and
:func:`owner_guard`, a compare for your own etcd transactions."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import etcd3.transactions
from etcd3 import etcdrpc

from fencing_coord.config import connect, parse_url
from fencing_coord.errors import ConfigurationError, FencingCoordError, InvalidArgument, InvalidArgumentType
from fencing_coord.grant import Grant
from fencing_coord.spi import ROOT
from fencing_coord.stores.base import FencedOutcome, Store

from .backend import EtcdBackend
from .places import EtcdGrant
from .wire import compare, put, range_kvs, range_op, range_request, txn

__all__ = ["EtcdStore", "fenced_outcome", "fenced_request", "owner_guard", "prepare_request", "resource_keys",
           "token_key_gone"]

_log = logging.getLogger(__name__)


def owner_guard(grant: Grant) -> Any:
    """A comparison that holds only while ``grant``'s holder still holds the lock, for
    your own etcd transactions (the etcd Go client's ``Mutex.IsOwner()``). For a term
    of an election, pass ``term.grant``: it holds while that term lasts.

    Returns a ``python3-etcd3`` compare (``etcd3.transactions.Create``: the grant's key
    still exists with the grant's token as its create revision); put it in
    ``client.transaction(compare=[...])``. For raw gRPC, ``.build_message()`` gives the
    ``etcdrpc.Compare``. Raises InvalidArgument for a grant not issued by an
    :class:`EtcdBackend`.
    """
    if not isinstance(grant, Grant):
        raise InvalidArgumentType(f"owner_guard needs a Grant, not {type(grant).__name__}")
    if not isinstance(grant, EtcdGrant):
        raise InvalidArgument(f"{grant!r} was not issued by an etcd backend")
    return etcd3.transactions.Create(grant.place.key) == grant.place.revision


# Tokens are stored as fixed-width decimal so that etcd's byte-wise value comparison
# orders them as numbers.
_TOKEN_WIDTH = 20


def _token_bytes(token: int) -> bytes:
    if token >= 10**_TOKEN_WIDTH:
        raise InvalidArgument(f"token {token} is too large for EtcdStore (at most {_TOKEN_WIDTH} digits)")
    return str(token).zfill(_TOKEN_WIDTH).encode()


class EtcdStore(Store):
    """A :class:`~fencing_coord.stores.base.Store` kept in etcd: fencing inside the
    coordination service itself. Safe across threads and processes.

    ``EtcdStore(backend)`` shares an :class:`EtcdBackend`'s connection (and namespace);
    ``EtcdStore(url)`` connects its own and closes it in :meth:`close`. Per resource, the
    highest admitted token and the values are etcd keys under
    ``/fencing-coord/<namespace>/resources/<resource>/`` (``token``: 20-digit decimal,
    so that etcd's byte-wise comparison orders tokens as numbers; ``data/<key>``), and
    every fenced operation is one etcd transaction that compares the token key and
    writes both. The first operation on a resource also creates its token key.

    A fenced write that times out is not sent again unless etcd certainly did not apply
    it: BackendUnavailable then says "may have been applied". Values are limited by
    etcd's request size (``--max-request-bytes``, 1.5 MiB by default).
    """

    def __init__(self, backend_or_url: EtcdBackend | str, *, namespace: str | None = None) -> None:
        if isinstance(backend_or_url, str):
            made = connect(backend_or_url)
            if not isinstance(made, EtcdBackend):
                made.close()
                raise ConfigurationError(f"EtcdStore needs an etcd:// URL, not {parse_url(backend_or_url).scheme}://")
            self._backend, self._owned = made, True
        elif isinstance(backend_or_url, EtcdBackend):
            self._backend, self._owned = backend_or_url, False
        else:
            kind = type(backend_or_url).__name__
            raise InvalidArgumentType(f"EtcdStore needs an EtcdBackend or an etcd:// URL, not {kind}")
        self._conn = self._backend._conn
        self._root = f"{ROOT}/{namespace or self._backend.namespace}/resources/".encode()
        #: Resources whose token key this store has seen exist (see prepare_request).
        self._ready: set[str] = set()

    def _keys(self, resource: str, key: str | None = None) -> tuple[bytes, bytes]:
        return resource_keys(self._root, resource, key)

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        return self._fenced(resource, key, token, strict, put(self._keys(resource, key)[1], value))

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        return self._fenced(resource, key, token, strict, range_op(range_request(self._keys(resource, key)[1])))

    def _fenced(self, resource: str, key: str, token: int, strict: bool, operation: Any) -> FencedOutcome:
        token_key, request, is_read = fenced_request(self._keys(resource, key)[0], token, strict, operation)
        for _ in range(2):
            if resource not in self._ready:
                self._conn.txn(prepare_request(token_key))
                self._ready.add(resource)
            outcome = fenced_outcome(self._conn.txn(request, idempotent=is_read), is_read)
            if outcome is not None:
                return outcome
            self._ready.discard(resource)  # the token key was deleted behind our back
        raise token_key_gone(token_key, resource)

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        self._conn.call("KV", "Put", etcdrpc.PutRequest(key=self._keys(resource, key)[1], value=value))

    def plain_read(self, resource: str, key: str) -> bytes | None:
        kvs = self._conn.range(range_request(self._keys(resource, key)[1]))
        return kvs[0].value if kvs else None

    def highest_token(self, resource: str) -> int | None:
        kvs = self._conn.range(range_request(self._keys(resource)[0]))
        return int(kvs[0].value) if kvs and kvs[0].value else None

    def close(self) -> None:
        if self._owned:
            self._backend.close()


def resource_keys(root: bytes, resource: str, key: str | None = None) -> tuple[bytes, bytes]:
    """(token key, value key) of ``resource`` (and ``key``) under ``root``."""
    base = root + quote(resource, safe="").encode() + b"/"
    return base + b"token", base + b"data/" + (key or "").encode()


def fenced_request(token_key: bytes, token: int, strict: bool, operation: Any) -> tuple[bytes, Any, bool]:
    """(token key, the one transaction of a fenced ``operation``, whether it is a read)."""
    mine = _token_bytes(token)
    # Admitted when highest < token (strict) or highest <= token, i.e. < token + 1.
    # An empty value (no token admitted yet) is below every bound.
    bound = mine if strict else _token_bytes(token + 1)
    request = txn(
        [compare(token_key, "value", "<", bound)],
        [range_op(range_request(token_key)), put(token_key, mine), operation],
        [range_op(range_request(token_key))],
    )
    return token_key, request, operation.WhichOneof("request") == "request_range"


def prepare_request(token_key: bytes) -> Any:
    """Create the resource's token key, empty (no token admitted yet), unless it exists:
    etcd cannot compare the value of a missing key, and a second branch for "missing"
    would carry the written value twice in one request."""
    return txn([compare(token_key, "create", "==", 0)], [put(token_key, b"")])


def fenced_outcome(response: Any, is_read: bool) -> FencedOutcome | None:
    """The outcome of :func:`fenced_request`'s answer; None when the token key is gone
    (prepare it again)."""
    before = range_kvs(response.responses[0])
    if not before:
        return None
    highest = int(before[0].value) if before[0].value else None
    if not response.succeeded:
        return FencedOutcome(False, highest)
    return FencedOutcome(True, highest, _read_value(response.responses[2]) if is_read else None)


def token_key_gone(token_key: bytes, resource: str) -> FencingCoordError:
    return FencingCoordError(f"the token key {token_key.decode()} of resource {resource!r} keeps disappearing")


def _read_value(response_op: Any) -> bytes | None:
    kvs = range_kvs(response_op)
    return kvs[0].value if kvs else None
