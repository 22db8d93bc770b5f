"""``HttpxFencingAuth``: an ``httpx.Auth`` that sends a grant's fence with every request
and turns the receiver's refusals into our errors (seed 003's client wrapper).

    with backend.lock("orders", timeout=5) as grant, \\
            httpx.Client(base_url=url, auth=HttpxFencingAuth(grant)) as client:
        client.post("/pay", json=order)     # StaleTokenError if a newer holder got there first

Works with ``httpx.Client`` and ``httpx.AsyncClient``. ``auth=`` wraps another
``httpx.Auth`` (bearer, digest, ...), whose flow runs unchanged with the fence added to
each of its requests. A refusal's body is read only for a refusal; other responses,
streamed ones included, are left as they are. Needs ``pip install 'fencing-coord[http]'``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

import httpx

from ..bound import fence_of
from ..errors import InvalidArgumentType
from ..stores.base import check_store_token
from ..validation import check_name
from .protocol import ERROR_HEADER, RESOURCE_HEADER, TOKEN_HEADER, refusal_error

if TYPE_CHECKING:
    from ..election import Term
    from ..interface import Grant

__all__ = ["HttpxFencingAuth"]


class HttpxFencingAuth(httpx.Auth):
    """Adds ``Fencing-Token``/``Fencing-Resource`` for ``holder`` (a Grant or a Term;
    ``resource`` overrides its name) to every request; raises
    :class:`~fencing_coord.StaleTokenError` on the receiver's 409, and the errors of
    :func:`~fencing_coord.http.protocol.refusal_error` on its 428, 400 and 503."""

    def __init__(self, holder: Grant | Term, resource: str | None = None, *, auth: httpx.Auth | None = None) -> None:
        token, name = fence_of(holder, resource)
        self._init(token, name, auth)

    @classmethod
    def for_token(cls, token: int, resource: str, *, auth: httpx.Auth | None = None) -> HttpxFencingAuth:
        """For a token received from elsewhere (another process, a job's arguments)."""
        made = cls.__new__(cls)
        made._init(check_store_token(token), check_name(resource, "resource name"), auth)
        return made

    def _init(self, token: int, resource: str, auth: httpx.Auth | None) -> None:
        if auth is not None and not isinstance(auth, httpx.Auth):
            raise InvalidArgumentType(f"auth must be an httpx.Auth, not {type(auth).__name__}")
        self.token, self.resource, self.inner = token, resource, auth
        self._headers = {TOKEN_HEADER: str(token), RESOURCE_HEADER: resource}

    def __repr__(self) -> str:
        return f"HttpxFencingAuth({self.resource!r}, token={self.token})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        flow = (self.inner or _NO_AUTH).sync_auth_flow(request)
        outgoing = next(flow)
        while True:
            outgoing.headers.update(self._headers)
            response = yield outgoing
            try:
                outgoing = flow.send(response)
            except StopIteration:
                break
        if response.headers.get(ERROR_HEADER) is not None:
            response.read()
            self._raise_for_refusal(response)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = (self.inner or _NO_AUTH).async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            outgoing.headers.update(self._headers)
            response = yield outgoing
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                break
        if response.headers.get(ERROR_HEADER) is not None:
            await response.aread()
            self._raise_for_refusal(response)

    @staticmethod
    def _raise_for_refusal(response: httpx.Response) -> None:
        request = f"{response.request.method} {response.request.url}"
        error = refusal_error(response.status_code, response.headers.get(ERROR_HEADER), response.content, request)
        if error is not None:
            raise error


_NO_AUTH = httpx.Auth()  # the base class's flow: the request as it is
