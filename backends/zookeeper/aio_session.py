"""kazoo's asynchronous results as asyncio futures: :class:`AsyncRequests`, the one
place where the asyncio front end sends a request, rides out a reconnection and maps
errors, with the rules of :meth:`.session.Session.request`.

kazoo completes a request on its own completion thread; the result is handed to the
event loop with ``loop.call_soon_threadsafe``, so a waiting task costs no thread. The
session itself (connection, states, heartbeats) stays kazoo's: its connection thread
keeps the session alive, which no asyncio task can do for it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from kazoo.exceptions import KazooException
from kazoo.handlers.threading import AsyncResult

from fencing_coord.aio.expiries import Expiries
from fencing_coord.aio.signals import LoopSignal
from fencing_coord.errors import BackendUnavailable

from .kazoo_results import kazoo_error
from .session import RETRYABLE, OutcomeUnknown, Session, SessionState

__all__ = ["AsyncRequests", "Deferred", "LoopResult", "joined", "use_loop_results"]

_log = logging.getLogger(__name__)


class LoopResult(AsyncResult):  # type: ignore[misc]  # kazoo is untyped
    """kazoo's result of a request, which also calls ``direct()`` (if set) from the
    thread that completes it: kazoo's connection thread. So an answer reaches the event
    loop in one hop (``call_soon_threadsafe``), not two (rawlink callbacks go through
    kazoo's completion thread first)."""

    def __init__(self, handler: Any) -> None:
        super().__init__(handler)
        self.direct: Callable[[], None] | None = None

    def set(self, value: Any = None) -> None:
        super().set(value)
        if self.direct is not None:
            self.direct()

    def set_exception(self, exception: BaseException) -> None:
        super().set_exception(exception)
        if self.direct is not None:
            self.direct()

    def notify(self, direct: Callable[[], None]) -> None:
        """Call ``direct()`` once the result is ready (at once if it is)."""
        with self._condition:
            self.direct = direct
            ready = self.ready()
        if ready:
            direct()


def joined(handler: Any, first: LoopResult, second: LoopResult) -> LoopResult:
    """A result with ``first``'s outcome, ready once ``second`` is ready too: for a
    request whose answer comes right before ``second``'s (on one connection, in the order
    sent), so that both reach the event loop in one hop, not two. kazoo fails every
    request in flight when the connection drops, so ``second`` never holds ``first``
    back beyond that. ``handler``: the client's kazoo handler."""
    both = LoopResult(handler)
    count = itertools.count()  # next() is atomic: the two completions may race

    def one_ready() -> None:
        if next(count) == 1:
            if first.successful():
                both.set(first.value)
            else:
                both.set_exception(first.exception)

    first.notify(one_ready)
    second.notify(one_ready)
    return both


def use_loop_results(client: Any) -> None:
    """Make ``client``'s requests return :class:`LoopResult` (before it starts)."""
    client.handler.async_result = functools.partial(LoopResult, client.handler)


class Deferred:
    """The cancellation of a task whose request runs to its end (see
    :meth:`AsyncRequests.request`): kept in ``cancelled`` instead of raised, for the
    caller to raise once it has booked the outcome."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled: asyncio.CancelledError | None = None

    def keep(self, exc: asyncio.CancelledError) -> None:
        if self.cancelled is None:
            self.cancelled = exc


class _ToTheEnd(asyncio.Future[Any]):
    """A request's future that refuses to be cancelled: cancelling the awaiting task then
    only marks it (asyncio's ``Task.cancel``), and the cancellation is raised into the
    task once the answer (or the time limit) has resolved this future. So a request runs
    to its end through cancellations without a task of its own (no shield)."""

    def cancel(self, msg: Any = None) -> bool:
        return False


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if result.successful():
        future.set_result(result.value)
    else:
        future.set_exception(result.exception)


class AsyncRequests:
    """Requests on ``session`` (a blocking :class:`Session`, whose kazoo client and
    states are shared) for tasks of the running event loop."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.loop = asyncio.get_running_loop()
        self.expiries = Expiries(self.loop)  # the time limits of the requests in flight

    def _handed_over(self, future: asyncio.Future[Any], result: Any, _: Any = None) -> None:
        # kazoo's completion thread: hand the result to the loop, never block.
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(_resolve, future, result)

    async def request(self, what: str, start: Callable[[], Any], *,
                      budget: float | None = None, idempotent: bool = True,
                      expected: tuple[type[BaseException], ...] = (),
                      on_abandon: Callable[[Any], None] | None = None, to_the_end: Deferred | None = None) -> Any:
        """Send one request (``start()`` returns kazoo's async result) and return its
        value, as :meth:`Session.request`. Several requests go out together, in one
        round trip, when gathered. With ``to_the_end``, a cancellation of the calling
        task meanwhile does not cut the request short: it is kept there, and the request
        returns or raises as if it had not come."""
        session = self.session
        limit = time.monotonic() + (session.timeout if budget is None else budget)
        last: BaseException | None = None
        while True:
            epoch = await self.connected(what, limit, last, newer_than=None, to_the_end=to_the_end)
            result = start()
            try:
                return await self._answer(result, limit, to_the_end)
            except TimeoutError as exc:
                if on_abandon is not None:
                    result.rawlink(on_abandon)  # a create that completes later is undone
                raise BackendUnavailable(f"{what}: ZooKeeper ({session.hosts}) did not answer in time") from exc
            except expected:
                raise
            except RETRYABLE as exc:
                last = exc
                await self.connected(what, limit, exc, newer_than=epoch, to_the_end=to_the_end)
                if not idempotent:
                    raise OutcomeUnknown(what) from exc
            except KazooException as exc:
                raise kazoo_error(what, exc) from exc

    async def _answer(self, result: Any, limit: float, to_the_end: Deferred | None) -> Any:
        """The value of kazoo's ``result`` (its error raised), TimeoutError at ``limit``;
        for ``to_the_end`` see :meth:`request`. An answer that is there already (kazoo's
        thread outran ours) is taken at once, without a pass of the loop."""
        if result.ready():
            return result.get_nowait()
        future: asyncio.Future[Any] = self.loop.create_future() if to_the_end is None else _ToTheEnd(loop=self.loop)
        if isinstance(result, LoopResult):
            result.notify(functools.partial(self._handed_over, future, result))
        else:
            result.rawlink(functools.partial(self._handed_over, future))
        self.expiries.add(future, limit)
        try:
            return await future
        except asyncio.CancelledError as exc:
            if to_the_end is None or not future.done():
                raise
            to_the_end.keep(exc)  # raised into the task once the future was resolved
            return future.result()
        finally:
            self.expiries.discard(future)

    async def connected(self, what: str, limit: float, last: BaseException | None, newer_than: int | None,
                        to_the_end: Deferred | None = None) -> int:
        """Wait until connected (on a connection newer than epoch ``newer_than``); the
        connection's epoch. BackendUnavailable at ``limit``, InvalidArgument once closed.
        With ``to_the_end``, a cancellation of the calling task is kept there, not raised."""
        session = self.session
        while session.state is not SessionState.CONNECTED or (newer_than is not None
                                                              and session.epoch == newer_than):
            remaining = None if limit == float("inf") else limit - time.monotonic()
            if session.closed or (remaining is not None and remaining <= 0):
                raise session.not_connected(what, last)
            changed = LoopSignal()
            if session.add_wakeup(changed):
                try:
                    if session.state is not SessionState.CONNECTED or session.epoch == newer_than:
                        await changed.wait(remaining)
                except asyncio.CancelledError as exc:
                    if to_the_end is None:
                        raise
                    to_the_end.keep(exc)
                finally:
                    session.remove_wakeup(changed)
        return session.epoch

