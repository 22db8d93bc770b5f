"""The asyncio connection to an etcd cluster: ``grpc.aio`` channels over the same
protobuf stubs (``etcd3.etcdrpc``) and the same retry policy (:class:`.retry.Retry`) as
the blocking :class:`.connection.Connection`; nothing waits in a thread."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import grpc.aio
from etcd3 import etcdrpc

from fencing_coord.errors import InvalidArgument

from .aio_unary import ToEnd, Unary, cancel_all, direct
from .connection import Connection
from .retry import Members, Retry
from .wire import KV, StreamEnded

__all__ = ["AsyncConnection"]

_log = logging.getLogger(__name__)


class AsyncConnection(Members):
    """grpc.aio channels to the members of the cluster ``settings`` describes (a blocking
    :class:`Connection`, used for its settings only); one member in use at a time."""

    api = grpc.aio

    def __init__(self, settings: Connection) -> None:
        super().__init__(settings.targets, credentials=settings.credentials, user=settings.user,
                         password=settings.password, timeout=settings.timeout, label=settings.label)
        #: (member index, service, method): its unary callable (see :meth:`_direct`).
        self._unary: dict[tuple[int, str, str], Unary] = {}
        #: The calls of :attr:`_unary`'s callables in flight (cancelled by :meth:`close`).
        self._in_flight: set[Any] = set()

    async def close(self) -> None:
        channels = self._take_channels()
        self._unary.clear()
        cancel_all(self._in_flight)  # as the channels' close() does grpc.aio's own calls
        for channel in channels:
            await channel.close()

    async def authenticate(self, budget: float | None = None) -> None:
        """Log in with the URL's user and password (no-op without them), within
        ``budget`` seconds (default: the ``timeout`` option)."""
        if self.user is None:
            return
        request = etcdrpc.AuthenticateRequest(name=self.user, password=self.password or "")
        response = await self.call("Auth", "Authenticate", request, budget=budget, authenticating=True)
        self._metadata = (("token", str(response.token)),)

    async def call(self, service: str, method: str, request: Any, *, budget: float | None = None,
                   idempotent: bool = True, authenticating: bool = False) -> Any:
        """Send one unary request and return the response; retried and mapped as
        :meth:`Connection.call`. The first try needs no :class:`Retry` (made on its
        failure, with the budget counted from the start)."""
        index, seconds, stop = self.first_try(budget)
        retry: Retry | None = None
        while True:
            try:
                return await self._direct(index, service, method)(request, timeout=seconds, metadata=self._metadata)
            except (ValueError, grpc.RpcError) as exc:
                if retry is None:
                    retry = self._retry(stop, service, method, budget, idempotent, authenticating)
                pause = retry.failed(index, exc)
            except asyncio.CancelledError:
                self._check_closed_meanwhile()
                raise
            if pause is None:
                await self.authenticate(budget=retry.left())
            else:
                await asyncio.sleep(pause)
            index, seconds = retry.attempt()

    async def call_to_end(self, service: str, method: str, request: Any, *, budget: float | None = None,
                          idempotent: bool = True) -> tuple[Any, asyncio.CancelledError | None]:
        """As :meth:`call`, but carried to its end even when the calling task is cancelled
        meanwhile (a release must not be cut in half), without a task of its own (see
        :class:`.aio_unary.ToEnd`): the response and the cancellation, if one came, for
        the caller to raise once it has booked the response. If the request fails after
        a cancellation came, that cancellation is raised, caused by the request's error."""
        index, seconds, stop = self.first_try(budget)
        retry: Retry | None = None
        cancelled: asyncio.CancelledError | None = None
        while True:
            attempt = None
            try:
                rpc = self._direct(index, service, method)
                attempt = ToEnd(rpc(request, timeout=seconds, metadata=self._metadata))
                response = await attempt
                return response, attempt.cancelled or cancelled
            except (ValueError, grpc.RpcError) as exc:
                cancelled = cancelled if attempt is None else attempt.cancelled or cancelled
                try:
                    if retry is None:
                        retry = self._retry(stop, service, method, budget, idempotent, False)
                    pause = retry.failed(index, exc)
                except Exception as error:
                    if cancelled is not None:
                        raise cancelled from error
                    raise
            except asyncio.CancelledError:  # not ours (absorbed above): the channel was closed
                cancelled = cancelled if attempt is None else attempt.cancelled or cancelled
                if cancelled is not None:
                    raise cancelled from None
                self._check_closed_meanwhile()
                raise
            try:
                if pause is None:
                    await self.authenticate(budget=retry.left())
                else:
                    await asyncio.sleep(pause)
            except asyncio.CancelledError as exc:  # cut the pause short; the request goes on
                cancelled = exc
            index, seconds = retry.attempt()

    def _retry(self, stop: float, service: str, method: str, budget: float | None, idempotent: bool,
               authenticating: bool) -> Retry:
        """The policy of a request whose first try (see :meth:`first_try`) failed."""
        return Retry(self, f"{service}.{method}", budget, idempotent=idempotent, authenticating=authenticating,
                     stop=stop)

    def _direct(self, index: int, service: str, method: str) -> Unary:
        """The unary callable of ``service.method`` on member ``index`` (see
        :mod:`.aio_unary`; cached: no lock and no lookup per request). After
        :meth:`close`: InvalidArgument."""
        rpc = self._unary.get((index, service, method))
        if rpc is None:
            rpc = direct(getattr(self._stub(index, service), method), self._in_flight)
            self._unary[(index, service, method)] = rpc
        return rpc

    async def keepalive(self, lease_id: int, *, budget: float | None = None) -> int:
        """Refresh lease ``lease_id`` once; its new TTL (<= 0: etcd no longer has it)."""
        request = etcdrpc.LeaseKeepAliveRequest(ID=lease_id)
        retry = Retry(self, "LeaseKeepAlive", budget, idempotent=True, authenticating=False)
        while True:
            index, seconds = retry.attempt()
            call = None
            try:
                call = self._stub(index, "Lease").LeaseKeepAlive(timeout=seconds, metadata=self._metadata)
                await call.write(request)
                answer = await call.read()
                if answer is grpc.aio.EOF:
                    raise StreamEnded("etcd closed the keepalive stream without an answer")
                return int(answer.TTL)
            except (ValueError, StreamEnded, grpc.RpcError) as exc:
                pause = retry.failed(index, exc)
            except asyncio.CancelledError:
                self._check_closed_meanwhile()
                raise
            finally:
                if call is not None:
                    call.cancel()
            if pause is None:
                await self.authenticate(budget=retry.left())
            else:
                await asyncio.sleep(pause)

    def _check_closed_meanwhile(self) -> None:
        """A call ended in CancelledError: grpc's answer to ``close()`` cancelling the
        calls of its channels. Unless the task itself is being cancelled, that is the
        connection being closed: InvalidArgument, as for a call after close (the
        blocking connection's rule)."""
        task = asyncio.current_task()
        if self._closed and (task is None or task.cancelling() == 0):
            raise InvalidArgument(f"{self.label}: the backend is closed")

    def txn(self, request: Any, *, budget: float | None = None, idempotent: bool = True) -> Awaitable[Any]:
        """:meth:`call` of KV.Txn (its coroutine itself: no frame of its own to resume)."""
        return self.call("KV", "Txn", request, budget=budget, idempotent=idempotent)

    async def range(self, request: Any, *, budget: float | None = None) -> list[KV]:
        response = await self.call("KV", "Range", request, budget=budget)
        return [KV.of(kv) for kv in response.kvs]

    def watch(self, requests: AsyncIterator[Any] | None = None) -> tuple[int, Any]:
        """Open a watch stream on the member in use: (member index, the stream call, to
        ``read`` responses from, and to ``write`` requests to unless they come from the
        async iterator ``requests``). It carries ``hasleader``, so that etcd ends it when
        that member loses its leader."""
        index = self._current
        return index, self._stub(index, "Watch").Watch(requests, metadata=(*self._metadata, ("hasleader", "true")))
