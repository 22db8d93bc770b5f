"""The edge to etcd's v3 gRPC API: request builders, the key-value pairs of responses,
and what a gRPC error means.

We speak the API with the protobuf messages of the ``python3-etcd3`` distribution
(``etcd3.etcdrpc``), not its high-level client: that client cannot sort or limit a range
inside a transaction. No protobuf message leaves the package: responses are read into
:class:`KV` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
from etcd3 import etcdrpc

from fencing_coord.errors import LockLost
from fencing_coord.typeless import FrozenValue

__all__ = [
    "KV",
    "MAX_TXN_OPS",
    "RETRY_CODES",
    "LeaseNotFound",
    "StreamEnded",
    "compare",
    "details",
    "not_applied",
    "prefix_end",
    "put",
    "range_kvs",
    "range_op",
    "range_request",
    "status_code",
    "txn",
]

#: etcd's default --max-txn-ops.
MAX_TXN_OPS = 128

#: Errors after which the same request may succeed on another member or a moment later.
RETRY_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
})


def prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class KV(FrozenValue):
    """A key-value pair as etcd reports it (no protobuf beyond this package's edge).
    A frozen value (:class:`~fencing_coord.typeless.FrozenValue`, not a dataclass: making
    one costs a millisecond at import, issue 13)."""

    __match_args__ = ("key", "value", "create_revision", "mod_revision", "lease")

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    def __init__(self, key: bytes, value: bytes, create_revision: int, mod_revision: int, lease: int) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "create_revision", create_revision)
        object.__setattr__(self, "mod_revision", mod_revision)
        object.__setattr__(self, "lease", lease)

    @staticmethod
    def of(pb: Any) -> KV:
        return KV(bytes(pb.key), bytes(pb.value), int(pb.create_revision), int(pb.mod_revision), int(pb.lease))


def range_kvs(response_op: Any) -> list[KV]:
    """The pairs a range inside a transaction returned."""
    return [KV.of(kv) for kv in response_op.response_range.kvs]


def put(key: bytes, value: bytes, lease: int = 0) -> Any:
    """A put, as an operation of a transaction."""
    return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value, lease=lease))


def range_request(key: bytes, range_end: bytes = b"", *, limit: int = 0, newest_first: bool = False,
                  by_create: bool = False, max_create_revision: int = 0, keys_only: bool = False,
                  serializable: bool = False) -> Any:
    """A range read of ``key`` (or of ``key`` up to ``range_end``), sorted by create
    revision when ``by_create``; from the member's own state when ``serializable``."""
    request = etcdrpc.RangeRequest(key=key, range_end=range_end, limit=limit, keys_only=keys_only,
                                   max_create_revision=max_create_revision, serializable=serializable)
    if by_create:
        request.sort_target = etcdrpc.RangeRequest.CREATE
        request.sort_order = etcdrpc.RangeRequest.DESCEND if newest_first else etcdrpc.RangeRequest.ASCEND
    return request


def range_op(request: Any) -> Any:
    """A range read, as an operation of a transaction."""
    return etcdrpc.RequestOp(request_range=request)


def compare(key: bytes, target: str, result: str, value: int | bytes, range_end: bytes = b"") -> Any:
    """A transaction's condition: ``target`` (create, mod, version or value) of ``key``
    is ``==`` or ``<`` ``value``."""
    condition = etcdrpc.Compare(key=key, range_end=range_end)
    condition.result = {"==": etcdrpc.Compare.EQUAL, "<": etcdrpc.Compare.LESS}[result]
    if target == "create":
        condition.target, condition.create_revision = etcdrpc.Compare.CREATE, value
    elif target == "mod":
        condition.target, condition.mod_revision = etcdrpc.Compare.MOD, value
    elif target == "version":
        condition.target, condition.version = etcdrpc.Compare.VERSION, value
    else:
        condition.target, condition.value = etcdrpc.Compare.VALUE, value
    return condition


def txn(conditions: Sequence[Any] = (), success: Sequence[Any] = (), failure: Sequence[Any] = ()) -> Any:
    return etcdrpc.TxnRequest(compare=list(conditions), success=list(success), failure=list(failure))


# -- what an error means --------------------------------------------------------------------------


class LeaseNotFound(LockLost):
    """etcd no longer knows the lease (revoked or expired): internal signal only."""


class StreamEnded(Exception):
    """A keepalive stream closed without an answer."""


def details(exc: grpc.RpcError) -> str:
    """The server's text of a gRPC error (of the blocking or the asyncio API)."""
    text = exc.details() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else None
    return str(text or exc)


def status_code(exc: grpc.RpcError) -> grpc.StatusCode | None:
    return exc.code() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else None


def not_applied(exc: grpc.RpcError) -> bool:
    """True when etcd certainly did not apply the request (so even a non-idempotent
    request may be sent again)."""
    text = details(exc).lower()
    return status_code(exc) == grpc.StatusCode.UNAVAILABLE and ("failed to connect" in text or "no leader" in text)
