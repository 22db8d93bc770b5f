"""``FencingMiddleware``: an ASGI receiver (Starlette, FastAPI, any ASGI app) that admits
each request by its fencing token before the handler runs (pattern D).

    app = Starlette(routes=routes)
    app.add_middleware(FencingMiddleware, gate=SQLiteAdmission("state.db"))

    async def pay(request):
        fenced = request.state.fencing              # a FencedRequest (or fenced(request))
        fenced.connection.execute("UPDATE ...")      # commits with the token, atomically

Per request: read ``Fencing-Token``/``Fencing-Resource`` (see
:mod:`~fencing_coord.http.protocol`); answer 428/400 for a missing/malformed fence, 409
for a stale token (the handler does not run), 503 if the store cannot decide. An
admitted request runs the handler with ``scope["state"]["fencing"]`` set (Starlette's
``request.state.fencing``). The admission is finished when the response starts: committed
for a status below 500, rolled back for 5xx, an exception, or no response at all. If
that commit fails, the client gets a 503 instead of the handler's response. SQL the
handler runs after its response started is outside the transaction.

The gate's blocking calls run in worker threads (``asyncio.to_thread``), so the event
loop never waits on the store; a MemoryStore is asked inline, and a store admission has
no transaction to finish, so it costs no thread hop there. Needs no third-party package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from ..errors import BackendUnavailable
from ..gate import FencedResource
from .admission import Admission, FencedRequest, Ticket, as_admission
from .protocol import RESOURCE_HEADER, TOKEN_HEADER, Fence, Refusal, parse_fence, stale, unavailable

__all__ = ["FencingMiddleware", "fenced"]

_log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TOKEN = TOKEN_HEADER.lower().encode()
_RESOURCE = RESOURCE_HEADER.lower().encode()


def fenced(request: Any) -> FencedRequest | None:
    """The :class:`FencedRequest` of an admitted request, or None for one that passed
    unfenced. ``request`` is a Starlette/FastAPI request, an ASGI scope, or a WSGI environ."""
    scope = getattr(request, "scope", request)
    if not isinstance(scope, Mapping):
        return None
    handle = scope.get("fencing_coord.fenced")  # a WSGI environ
    if handle is None:
        handle = (scope.get("state") or {}).get("fencing")
    return handle if isinstance(handle, FencedRequest) else None


class FencingMiddleware:
    """Admit requests to ``app`` through ``gate`` (an :class:`Admission`, or a
    :class:`~fencing_coord.FencedResource`, taken as a :class:`StoreAdmission`).

    ``resource``: the resource name when a request has no ``Fencing-Resource`` header.
    ``required``: whether a request without ``Fencing-Token`` is refused with 428 (True),
    passed through unfenced (False), or a function of the ASGI scope deciding it (for
    example ``lambda scope: scope["method"] != "GET"``).
    """

    def __init__(self, app: ASGIApp, gate: Admission | FencedResource, *, resource: str | None = None,
                 required: bool | Callable[[Scope], bool] = True) -> None:
        self.app = app
        self.gate = as_admission(gate)
        self.resource = resource
        self.required = required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = resource = None
        for name, value in scope["headers"]:
            if name == _TOKEN:
                token = value.decode("latin-1")
            elif name == _RESOURCE:
                resource = value.decode("latin-1")
        required = self.required(scope) if callable(self.required) else self.required
        decision = parse_fence(token, resource, self.resource, required)
        if decision is None:
            await self.app(scope, receive, send)
        elif isinstance(decision, Refusal):
            await _respond(send, decision)
        else:
            await self._admit(decision, scope, receive, send)

    async def _admit(self, fence: Fence, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            ticket = await asyncio.to_thread(self.gate.admit, fence) if self.gate.blocking else self.gate.admit(fence)
        except BackendUnavailable as exc:
            _log.warning("fencing %s token %d: store unavailable: %s", fence.resource, fence.token, exc)
            await _respond(send, unavailable(fence, f"the fencing store could not decide: {exc}"))
            return
        if not ticket.admitted:
            _log.info("fencing %s token %d: refused, highest %s", fence.resource, fence.token, ticket.highest)
            await _respond(send, stale(fence, ticket.highest, self.gate.strict))
            return
        _log.debug("fencing %s token %d: admitted", fence.resource, fence.token)
        await _Exchange(fence, ticket, send).run(self.app, scope, receive)


class _Exchange:
    """One admitted request: finishes its ticket when the response starts, or after the
    handler failed or never answered."""

    def __init__(self, fence: Fence, ticket: Ticket, send: Send) -> None:
        self.fence, self.ticket, self.send = fence, ticket, send
        self.finished = False
        self.replaced = False  # the commit failed: the client got our 503, not the handler's response

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        state = dict(scope.get("state") or {})  # the server's lifespan state is shared: copy
        state["fencing"] = self.ticket.request
        try:
            await app({**scope, "state": state}, receive, self._send)
        finally:
            if not self.finished and self.ticket.pending:
                self.finished = True
                with contextlib.suppress(BackendUnavailable):  # a failed rollback undoes the work as well
                    await asyncio.to_thread(self.ticket.finish, False)

    async def _send(self, message: Message) -> None:
        if self.replaced:
            return
        if message["type"] == "http.response.start" and not self.finished and self.ticket.pending:
            self.finished = True
            try:
                await asyncio.to_thread(self.ticket.finish, int(message["status"]) < 500)
            except BackendUnavailable as exc:
                _log.warning("fencing %s token %d: commit failed: %s", self.fence.resource, self.fence.token, exc)
                self.replaced = True
                await _respond(self.send, unavailable(self.fence, f"committing the handler's work failed: {exc}"))
                return
        await self.send(message)


async def _respond(send: Send, refusal: Refusal) -> None:
    body = refusal.body()
    headers = [(name.encode(), value.encode()) for name, value in refusal.headers(body)]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
