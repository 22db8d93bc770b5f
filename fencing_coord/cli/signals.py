"""Signal handling of ``fencing-coord run``: signals are collected
(:class:`SignalInbox`) for run's loops to act on, never raised where they land. While
it waits for its lock, SIGTERM and SIGHUP end it (:class:`Terminated`); while its
command runs, SIGINT, SIGTERM and SIGHUP are passed on. A signal ignored when ``run``
started (``nohup``; ``cmd &`` in a script) stays ignored, by ``run`` and its command."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["SignalInbox", "Terminated"]


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived while ``run`` waited for its lock (raised by run's own
    loop, never by a signal handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum} while waiting for the lock")
        self.signum = signum


@contextlib.contextmanager
def _signals_handled_by(handler: Callable[[int, FrameType | None], None], *sigs: signal.Signals) -> Iterator[None]:
    """Install ``handler`` for those of ``sigs`` not ignored, while the block runs;
    restore the previous ones. An ignored signal stays ignored: a process started by
    ``nohup`` (SIGHUP) or in the background by a script (``cmd &``: SIGINT) was asked
    not to be stopped by it, and a command it starts inherits the ignored disposition
    (a handler would be reset to the default action by exec)."""
    previous = {sig: signal.signal(sig, handler) for sig in sigs if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class SignalInbox:
    """Signals that arrived while :meth:`collecting` ran, in order, for a loop to act on.

    The handler only records the signal and writes a byte to ``wake_fd``, so that a loop
    blocked reading the other end of that pipe wakes up; it takes no lock and raises
    nothing, so it is safe wherever the main thread is interrupted. ``wake_fd`` (non-
    blocking) is also the interpreter's wakeup fd meanwhile: a signal that the kernel
    delivers to another thread (gRPC's, kazoo's) runs the handler only once the main
    thread is back in Python, which a loop blocked in ``select`` with no timeout never
    is; the byte the C-level handler writes wakes it.
    """

    def __init__(self, wake_fd: int) -> None:
        self._wake_fd = wake_fd
        self._received: list[int] = []

    def collecting(self, *sigs: signal.Signals) -> contextlib.AbstractContextManager[None]:
        """Collect ``sigs`` (instead of their usual effect) while the block runs; those
        ignored when it begins stay ignored."""

        def collect(signum: int, _frame: FrameType | None) -> None:
            self._received.append(signum)
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_fd, b"s")

        @contextlib.contextmanager
        def collecting() -> Iterator[None]:
            with _signals_handled_by(collect, *sigs):
                previous = signal.set_wakeup_fd(self._wake_fd, warn_on_full_buffer=False)
                try:
                    yield
                finally:
                    signal.set_wakeup_fd(previous)

        return collecting()

    def take(self) -> list[int]:
        """The signals received since the last call, oldest first."""
        taken, self._received = self._received, []
        return taken
