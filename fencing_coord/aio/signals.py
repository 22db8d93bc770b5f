"""Waking a task from any thread without a thread of its own: :class:`LoopSignal`, and
:func:`wait_lost`, the awaitable form of :meth:`Grant.wait_lost`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..errors import InvalidArgumentType
from ..grant import Grant
from ..validation import check_timeout

__all__ = ["LoopSignal", "wait_lost"]

_log = logging.getLogger(__name__)


class LoopSignal:
    """An :class:`asyncio.Event` of the loop that made it, settable from any thread.

    ``set()`` is cheap and never blocks: from the loop's own thread it sets the event at
    once; from another thread (kazoo's, a grant's callback thread) it asks the loop to.
    Made inside a coroutine (it binds the running loop)."""

    __slots__ = ("_event", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        try:
            if asyncio.get_running_loop() is self._loop:
                self._event.set()
                return
        except RuntimeError:
            pass  # no loop in this thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._event.set)

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """True once set, False when ``timeout`` seconds (None: no limit) passed first."""
        if self._event.is_set():
            return True
        if timeout is None:
            await self._event.wait()
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return self._event.is_set()
        return True


async def wait_lost(grant: Grant, timeout: float | None = None) -> bool:
    """Wait (without a thread) until ``grant`` is lost and the ``on_lost`` callbacks
    registered before the loss have returned; True if that happened within ``timeout``
    seconds (None: no limit). A released grant is never lost: this then waits out the
    timeout and returns False."""
    if not isinstance(grant, Grant):
        raise InvalidArgumentType(f"wait_lost needs a Grant, not {type(grant).__name__}")
    seconds = check_timeout(timeout)
    settled = LoopSignal()
    grant._when_settled(settled.set)
    if not settled.is_set():
        _ = grant.lost  # lets a lazily-checking backend (memory) notice the loss now
    return await settled.wait(seconds)
