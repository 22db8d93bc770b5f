"""The fair queue: the one waiting algorithm behind every lock and election, on every backend.

Contenders queue in arrival order; the first holds. Each waiter waits on its predecessor
only (no thundering herd) and looks at its place again after every wake-up. A waiter
whose own entry vanished (its lease or session died, someone deleted it) queues again,
at the back, until its deadline: ``acquire`` promises to wait for the lock, not for one
particular place. Whatever ends a wait early (the deadline, an error, a cancellation,
``close()``) withdraws the entry, so nobody is left queued behind a ghost.

The algorithm is written once, without I/O (Curator's ``LockInternals`` and etcd's
``waitDeletes`` are the models): :func:`queue_steps` is a generator that yields
:class:`Step` requests and receives their results. A backend supplies a
:class:`QueueDriver` that carries them out against its service; :func:`wait_in_line` runs
the steps on a blocking driver, and an asyncio runner can run the same steps on a driver
whose methods are coroutines (:func:`await_in_line`, for :mod:`fencing_coord.aio`).

Cancellation (asyncio). The algorithm treats a ``CancelledError`` thrown into a waiting
step like any other error: the entry is withdrawn. :func:`await_in_line` carries that
withdrawal out to the end even if the task is cancelled again meanwhile. ``claim`` of an
async driver is a plain method (binding a grant to a lease or session needs no round
trip), so between the look that finds the caller first and the grant reaching the
caller there is no await at which a cancellation could fall: a cancellation either
withdraws the entry (held or not) or comes after the caller has the grant.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Generator

# Not ``from typing import ...`` at runtime (about 5 ms on the path of every process's
# first grant, issue 13): the driver protocols, which need it, live in .fairqueue_protocols
# and are imported from there when first named (PEP 562, below).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Literal, TypeVar

    from .fairqueue_protocols import AsyncQueueDriver, P, Place, QueueDriver, R

    StepKind = Literal["enqueue", "look", "wait", "withdraw", "claim", "queued"]
    T = TypeVar("T")

__all__ = [
    "AsyncQueueDriver",
    "EntryGone",
    "Place",
    "QueueDriver",
    "Step",
    "await_in_line",
    "complete",
    "queue_steps",
    "wait_in_line",
]

_log = logging.getLogger(__name__)


class EntryGone(Exception):
    """Raised by a driver: the caller's own entry vanished, or can no longer be granted
    (its lease or session died) and was disposed of. The algorithm queues again."""


class Step:
    """One request of the algorithm: call ``driver.<kind>(*args)`` and send the result
    back (``queued``: call the caller's ``on_queued()`` instead). Not changed once made.

    A plain class, not a dataclass: making a dataclass costs about a millisecond at
    import, on the path of every process's first grant (issue 13: startup)."""

    __slots__ = ("args", "kind")

    def __init__(self, kind: StepKind, args: tuple[Any, ...] = ()) -> None:
        self.kind: StepKind = kind
        self.args = args

    def __repr__(self) -> str:
        return f"Step({self.kind!r}, {self.args!r})"


_QUEUED = Step("queued")


def queue_steps(deadline: float | None, clock: Callable[[], float] = time.monotonic) -> Generator[Step, Any, Any]:
    """The algorithm. Returns the result of ``claim`` once first, or None when
    ``deadline`` passed first (the entry withdrawn). A deadline already past means
    "try once": the driver may then refuse to enqueue at all (exclusive)."""
    queued = False
    exclusive = deadline is not None and clock() >= deadline
    while True:
        place = None
        try:
            place = yield Step("enqueue", (exclusive,))
            if place is None:
                return None
            while not place.first:
                if deadline is not None and clock() >= deadline:
                    withdrawing, place = place, None
                    yield Step("withdraw", (withdrawing,))
                    return None
                if not queued:
                    queued = True
                    yield _QUEUED
                yield Step("wait", (place, deadline))
                place = yield Step("look", (place,))
            claiming, place = place, None  # claim disposes of the entry if it fails
            return (yield Step("claim", (claiming,)))
        except EntryGone:
            if deadline is not None and clock() >= deadline and not exclusive:
                return None
        except GeneratorExit:  # the runner itself was abandoned; it can carry out nothing more
            raise
        except BaseException:
            if place is not None:
                try:
                    yield Step("withdraw", (place,))
                except Exception:  # the original error matters more; the driver retries later
                    _log.debug("withdrawing %r after an error failed", place, exc_info=True)
            raise


class _Run:
    """One run of :func:`queue_steps`, for a runner: the next step to carry out, and
    where its reply or error goes."""

    __slots__ = ("error", "reply", "result", "steps")

    def __init__(self, deadline: float | None) -> None:
        self.steps = queue_steps(deadline)
        self.reply: Any = None
        self.error: BaseException | None = None
        self.result: Any = None

    def next(self) -> Step | None:
        """The next step, or None once the algorithm returned (``result``) or raised."""
        try:
            step = self.steps.send(self.reply) if self.error is None else self.steps.throw(self.error)
        except StopIteration as done:
            self.result = done.value
            return None
        self.reply, self.error = None, None
        return step


def wait_in_line(
    driver: QueueDriver[P, R], deadline: float | None, on_queued: Callable[[], object] | None = None
) -> R | None:
    """Run the algorithm on a blocking ``driver``: the caller's thread waits in line.

    Returns the claimed result (a grant), or None once ``deadline`` passed (the entry
    withdrawn). Exceptions of the driver and of ``on_queued`` propagate after the entry
    was withdrawn."""
    run = _Run(deadline)
    while (step := run.next()) is not None:
        try:
            if step.kind != "queued":
                run.reply = getattr(driver, step.kind)(*step.args)
            elif on_queued is not None:
                on_queued()
        except BaseException as exc:  # handed to the algorithm, which withdraws and re-raises
            run.error = exc
    result: R | None = run.result
    return result


async def await_in_line(
    driver: AsyncQueueDriver[P, R], deadline: float | None, on_queued: Callable[[], object] | None = None
) -> R | None:
    """Run the algorithm on an asyncio ``driver``: the calling task waits in line.

    Returns and raises as :func:`wait_in_line`. A cancellation of the task while it
    waits withdraws the entry (carried to completion through further cancellations,
    see :func:`complete`) and then propagates."""
    run = _Run(deadline)
    while (step := run.next()) is not None:
        try:
            if step.kind == "withdraw":
                run.reply = await complete(driver.withdraw(*step.args))
            elif step.kind == "claim":
                run.reply = driver.claim(*step.args)
            elif step.kind != "queued":
                run.reply = await getattr(driver, step.kind)(*step.args)
            elif on_queued is not None:
                on_queued()
        except BaseException as exc:  # CancelledError included: the algorithm withdraws first
            run.error = exc
    result: R | None = run.result
    return result


async def complete(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even when the awaiting task is cancelled meanwhile (a
    withdrawal or a release must not be cut in half), then raise that cancellation;
    else return its result or raise its error."""
    import asyncio  # here: the blocking front end never needs it (about a third of its import time)

    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if not task.done():
                cancelled = exc
    if cancelled is not None:
        if not task.cancelled() and task.exception() is not None:
            _log.debug("%r failed after a cancellation", work, exc_info=task.exception())
        raise cancelled
    return task.result()


_PROTOCOLS = frozenset({"AsyncQueueDriver", "Place", "QueueDriver"})

if not TYPE_CHECKING:  # mypy sees the import at the top

    def __getattr__(name: str) -> Any:
        if name not in _PROTOCOLS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from . import fairqueue_protocols

        return getattr(fairqueue_protocols, name)
