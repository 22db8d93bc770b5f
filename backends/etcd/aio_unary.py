"""Unary requests on a ``grpc.aio`` channel without grpc.aio's call objects: the calling
task awaits gRPC's own (Cython) call (:func:`direct`).

Why: grpc.aio's unary callable makes a call object and a task per request, which its
caller then awaits: one acquire+release cost two tasks, eight event-loop passes, six
callbacks and 260 Python calls in grpc.aio and asyncio alone (``bench/aio_counts.py``,
raw aio), against 160 Python calls and no loop for blocking gRPC's two requests: the
floor of an asyncio client stood at 0.86x the blocking one's rate. Awaiting the Cython
call in the calling task leaves the same requests on the wire, one loop pass and two
callbacks fewer per request.

The Cython call gets what grpc.aio's call object gives it (the serialized request,
the metadata, an observability context), and its ``cancel`` when the awaiting task is
cancelled. grpc.aio's channel does not know these calls, so its ``close()`` cannot
cancel them: :func:`cancel_all` does, as the connection closes.

This leans on grpc.aio's internals (its callables' ``_channel``, ``_method``,
``_request_serializer``, ``_response_deserializer`` and ``_registered_call_handle``; the
Cython call's ``unary_unary``, ``is_ok``, ``status`` and ``cancel``, which grpc.aio's
own call object uses the same way). Internals can change in any release, so the direct
path is taken only on the grpcio releases it was tested with (:data:`TESTED_GRPC`: 1.84.0
and 1.85.3; 1.70 to 1.82 lack a registered call handle) and only where every one of them
is there; elsewhere :func:`direct` awaits grpc.aio's callable, and requests cost what
they did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Generator
from functools import partial
from typing import Any

import grpc
import grpc.aio

__all__ = ["DIRECT", "TESTED_GRPC", "ToEnd", "Unary", "cancel_all", "direct", "tested_release"]

_log = logging.getLogger(__name__)

#: The grpcio releases (major, minor) whose internals the direct path was tested with.
TESTED_GRPC = ((1, 84), (1, 85))

#: What grpc.aio tells gRPC when its caller cancels a call.
_CANCELLED = "Locally cancelled by application!"

#: A unary callable: ``rpc(request, timeout=, metadata=)``, a coroutine of the response.
Unary = Callable[..., Coroutine[Any, Any, Any]]


class _DirectUnary:
    """One method on one channel, called and answered as its grpc.aio callable is:
    the response; ``grpc.aio.AioRpcError`` for a status other than OK;
    ``CancelledError`` when the call was cancelled locally (the caller's task was
    cancelled, or :func:`cancel_all` ran). The calls in flight are kept in ``calls``."""

    __slots__ = ("_calls", "_census", "_channel", "_codes", "_handle", "_method", "_parse", "_serialize")

    def __init__(self, rpc: Any, calls: set[Any], codes: Callable[[int], grpc.StatusCode],
                 census: Callable[[], Any]) -> None:
        self._channel = rpc._channel
        self._method = rpc._method
        self._serialize = rpc._request_serializer
        self._parse = rpc._response_deserializer
        self._handle = rpc._registered_call_handle
        self._calls = calls
        self._codes = codes
        self._census = census

    async def __call__(self, request: Any, *, timeout: float, metadata: tuple[tuple[str, str], ...]) -> Any:
        call = self._channel.call(self._method, time.time() + timeout, None, None, self._handle)
        calls = self._calls
        calls.add(call)
        try:
            data = await call.unary_unary(self._serialize(request), metadata, self._census())
        except BaseException:  # the task cancelled, or the coroutine closed: gRPC's call must end too
            if not call.done():
                call.cancel(_CANCELLED)
            raise
        finally:
            calls.discard(call)
        if call.is_ok():
            return self._parse(data)
        if call.is_locally_cancelled():
            raise asyncio.CancelledError()
        status = await call.status()
        raise grpc.aio.AioRpcError(self._codes(status.code()), grpc.aio.Metadata(), grpc.aio.Metadata(),
                                   status.details(), status.debug_error_string())


def direct(rpc: Any, calls: set[Any]) -> Unary:
    """A :data:`Unary` for grpc.aio's unary callable ``rpc`` that awaits gRPC's call in
    the calling task, keeping the calls in flight in ``calls`` (for :func:`cancel_all`);
    where this grpc does not have what that needs, one that awaits ``rpc``'s call."""
    if DIRECT and _CODES is not None and _CENSUS is not None and not getattr(rpc, "_interceptors", True):
        try:
            return _DirectUnary(rpc, calls, _CODES, _CENSUS)
        except AttributeError:
            pass
    _log.debug("grpc %s: unary requests through grpc.aio's callables", grpc.__version__)

    async def unary(request: Any, *, timeout: float, metadata: tuple[tuple[str, str], ...]) -> Any:
        return await rpc(request, timeout=timeout, metadata=metadata)

    return unary


def cancel_all(calls: set[Any]) -> None:
    """Cancel the calls in flight of :func:`direct`'s callables (as grpc.aio's channel
    ``close()`` does its own): their callers get ``CancelledError``."""
    for call in list(calls):
        call.cancel(_CANCELLED)


class ToEnd:
    """``await ToEnd(coroutine)``: the coroutine's result, awaited in the calling task
    without a task of its own, and carried to its end even when the calling task is
    cancelled meanwhile: such cancellations are absorbed (the last one is kept in
    :attr:`cancelled`, for the caller to raise once it has booked the result).

    The task waits on a future of ours, completed by the one the coroutine waits on,
    so a cancellation cancels ours, never the coroutine's (as ``asyncio.shield`` does,
    without its task: one loop pass per suspension, not two)."""

    __slots__ = ("_coroutine", "cancelled")

    def __init__(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        self._coroutine = coroutine
        self.cancelled: asyncio.CancelledError | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        coroutine = self._coroutine
        loop = asyncio.get_running_loop()
        while True:
            try:
                waited = coroutine.send(None)
            except StopIteration as done:
                return done.value
            try:
                if waited is None:  # a bare yield (asyncio.sleep(0)): one loop pass
                    try:
                        yield None
                    except asyncio.CancelledError as exc:
                        self.cancelled = exc
                    continue
                waited._asyncio_future_blocking = False  # as a task does with what it is to wait on
                while not waited.done():
                    ours = loop.create_future()
                    waited.add_done_callback(partial(_complete, ours))
                    try:
                        yield from ours
                    except asyncio.CancelledError as exc:
                        self.cancelled = exc
            except GeneratorExit:  # the calling task was destroyed: end the coroutine too
                coroutine.close()
                raise


def _complete(ours: asyncio.Future[None], _: object) -> None:
    if not ours.done():
        ours.set_result(None)


def _status_mapper() -> Callable[[int], grpc.StatusCode] | None:
    try:
        from grpc._common import CYGRPC_STATUS_CODE_TO_STATUS_CODE
    except ImportError:
        return None
    codes: dict[int, grpc.StatusCode] = CYGRPC_STATUS_CODE_TO_STATUS_CODE
    return codes.__getitem__


def _census_context() -> Callable[[], Any] | None:
    try:
        from grpc._cython import cygrpc
    except ImportError:
        return None
    build: Callable[[], Any] | None = getattr(cygrpc, "build_census_context", None)
    return build


#: gRPC's status code of the Cython call's (None: not found in this grpc).
_CODES = _status_mapper()
#: The observability context grpc.aio gives each of its calls (None: not found).
_CENSUS = _census_context()


def tested_release(version: str) -> bool:
    """Whether grpcio ``version`` (such as ``1.85.3``) is of a release in :data:`TESTED_GRPC`."""
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    return major.isdigit() and minor.isdigit() and (int(major), int(minor)) in TESTED_GRPC


#: Whether :func:`direct` may await gRPC's Cython call: this grpcio release was tested
#: and its internals were found.
DIRECT = tested_release(grpc.__version__) and _CODES is not None and _CENSUS is not None
