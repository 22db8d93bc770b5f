"""``FencingWSGIMiddleware``: the WSGI receiver (Flask, Django, any WSGI app), with the
same protocol and guarantees as the ASGI one (:mod:`fencing_coord.http.asgi`).

    app.wsgi_app = FencingWSGIMiddleware(app.wsgi_app, gate=PostgresAdmission(dsn))

    @app.post("/pay")
    def pay():
        fenced = fenced_request(request.environ)         # a FencedRequest
        fenced.connection.execute("UPDATE ...")           # commits with the token

An admitted request's :class:`~fencing_coord.http.admission.FencedRequest` is
``environ["fencing_coord.fenced"]``. The admission is finished when the app calls
``start_response``: committed for a status below 500, rolled back for 5xx, an exception
or no response. If the commit fails, the client gets a 503 instead of the app's response.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import BackendUnavailable
from ..gate import FencedResource
from .admission import Admission, Ticket, as_admission
from .asgi import fenced as fenced_request
from .protocol import Fence, Refusal, parse_fence, stale, unavailable

__all__ = ["ENVIRON_KEY", "FencingWSGIMiddleware", "fenced_request"]

_log = logging.getLogger(__name__)

ENVIRON_KEY = "fencing_coord.fenced"

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class FencingWSGIMiddleware:
    """Admit requests to ``app`` through ``gate``; arguments as for the ASGI
    :class:`~fencing_coord.http.asgi.FencingMiddleware` (``required`` may be a function
    of the WSGI environ)."""

    def __init__(self, app: WSGIApp, gate: Admission | FencedResource, *, resource: str | None = None,
                 required: bool | Callable[[Environ], bool] = True) -> None:
        self.app = app
        self.gate = as_admission(gate)
        self.resource = resource
        self.required = required

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        required = self.required(environ) if callable(self.required) else self.required
        decision = parse_fence(environ.get("HTTP_FENCING_TOKEN"), environ.get("HTTP_FENCING_RESOURCE"),
                               self.resource, required)
        if decision is None:
            return self.app(environ, start_response)
        if isinstance(decision, Refusal):
            return _respond(start_response, decision)
        try:
            ticket = self.gate.admit(decision)
        except BackendUnavailable as exc:
            _log.warning("fencing %s token %d: store unavailable: %s", decision.resource, decision.token, exc)
            return _respond(start_response, unavailable(decision, f"the fencing store could not decide: {exc}"))
        if not ticket.admitted:
            _log.info("fencing %s token %d: refused, highest %s", decision.resource, decision.token, ticket.highest)
            return _respond(start_response, stale(decision, ticket.highest, self.gate.strict))
        _log.debug("fencing %s token %d: admitted", decision.resource, decision.token)
        exchange = _Exchange(decision, ticket, start_response)
        try:
            result = self.app({**environ, ENVIRON_KEY: ticket.request}, exchange.start_response)
        except BaseException:
            exchange.abandon()
            raise
        return _Body(exchange, result)


class _Exchange:
    """One admitted request: finishes its ticket when the app starts its response."""

    def __init__(self, fence: Fence, ticket: Ticket, start_response: StartResponse) -> None:
        self.fence, self.ticket, self.start = fence, ticket, start_response
        self.finished = False
        self.replacement: bytes | None = None  # our 503 body, when the commit failed

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[
            [bytes], object]:
        if not self.finished:
            self.finished = True
            try:
                self.ticket.finish(int(status.split(" ", 1)[0]) < 500)
            except BackendUnavailable as exc:
                _log.warning("fencing %s token %d: commit failed: %s", self.fence.resource, self.fence.token, exc)
                refusal = unavailable(self.fence, f"committing the handler's work failed: {exc}")
                self.replacement = refusal.body()
                self.start(refusal.status_line, refusal.headers(self.replacement))
                return lambda _data: None
        if self.replacement is not None:
            return lambda _data: None
        return self.start(status, headers, exc_info)

    def abandon(self) -> None:
        """Roll back if the app failed or never answered."""
        if not self.finished:
            self.finished = True
            with contextlib.suppress(BackendUnavailable):  # a failed rollback undoes the work as well
                self.ticket.finish(False)


class _Body:
    """The app's response body, or our 503 body once a commit failed; closing it closes
    the app's body and rolls back an admission that never got a response."""

    def __init__(self, exchange: _Exchange, result: Iterable[bytes]) -> None:
        self.exchange, self.result = exchange, result

    def __iter__(self) -> Iterator[bytes]:
        # start_response may come before the first chunk or while producing it.
        for chunk in self.result:
            if self.exchange.replacement is not None:
                break
            yield chunk
        if self.exchange.replacement is not None:
            yield self.exchange.replacement

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.exchange.abandon()


def _respond(start_response: StartResponse, refusal: Refusal) -> list[bytes]:
    body = refusal.body()
    start_response(refusal.status_line, refusal.headers(body))
    return [body]
