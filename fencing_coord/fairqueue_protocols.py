"""The driver protocols of :mod:`fencing_coord.fairqueue`: what a backend supplies for one
queue. Named as ``fencing_coord.fairqueue.QueueDriver`` (and :mod:`fencing_coord.spi`),
which import this module only when one of them is first named: a backend's own driver
does not subclass them, and importing :mod:`typing` costs about 5 ms on the path of
every process's first grant (issue 13)."""

from __future__ import annotations

from typing import Protocol, TypeVar

__all__ = ["AsyncQueueDriver", "P", "Place", "QueueDriver", "R"]


class Place(Protocol):
    """A contender's place in a queue, as its driver last saw it."""

    @property
    def first(self) -> bool:
        """True when no contender precedes this one: the lock (or leadership) is ours."""
        ...


P = TypeVar("P", bound=Place)
R = TypeVar("R", covariant=True)


class QueueDriver(Protocol[P, R]):
    """What one backend does for one queue (a lock or an election). See the README's
    "Writing a backend" for the full contract of each method."""

    def enqueue(self, exclusive: bool) -> P | None:
        """Add our entry; return its place (``first`` known). With ``exclusive``, may
        instead return None, leaving nothing behind, when anyone holds or waits."""
        ...

    def look(self, place: P) -> P:
        """Our place now. Raises EntryGone when our entry is gone or can no longer be
        granted (after disposing of it); InvalidArgument once the backend is closed."""
        ...

    def wait(self, place: P, deadline: float | None) -> None:
        """Block until our predecessor may have left, the session changed, the backend
        closed or ``deadline`` (a ``time.monotonic()`` value) passed."""
        ...

    def withdraw(self, place: P) -> object:
        """Delete our entry (in the background if the service cannot be reached now)."""
        ...

    def claim(self, place: P) -> R:
        """Turn a first place into the result (a grant); EntryGone if it no longer can be."""
        ...


class AsyncQueueDriver(Protocol[P, R]):
    """:class:`QueueDriver` for asyncio: the same contract, with coroutine methods
    (``wait`` suspends the task; no thread waits). ``claim`` stays a plain method: it
    must not await (see the module docstring)."""

    async def enqueue(self, exclusive: bool) -> P | None: ...

    async def look(self, place: P) -> P: ...

    async def wait(self, place: P, deadline: float | None) -> None: ...

    async def withdraw(self, place: P) -> object: ...

    def claim(self, place: P) -> R: ...
