"""Signal handling of ``fencing-coord run``: while it waits for its lock, SIGTERM and
SIGHUP end it (:class:`Terminated`); while its command runs, SIGINT, SIGTERM and SIGHUP
are collected (:class:`SignalInbox`) for run's loop to act on."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["SignalInbox", "Terminated", "raise_on_signals"]


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived while ``run`` waited for its lock."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum} while waiting for the lock")
        self.signum = signum


@contextlib.contextmanager
def _signals_handled_by(handler: Callable[[int, FrameType | None], None], *sigs: signal.Signals) -> Iterator[None]:
    """Install ``handler`` for ``sigs`` while the block runs; restore the previous ones."""
    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def raise_on_signals(*sigs: signal.Signals) -> contextlib.AbstractContextManager[None]:
    """Turn ``sigs`` into :class:`Terminated` in the main thread while the block runs."""

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise Terminated(signum)

    return _signals_handled_by(terminate, *sigs)


class SignalInbox:
    """Signals that arrived while :meth:`collecting` ran, in order, for a loop to act on.

    The handler only records the signal and writes a byte to ``wake_fd``, so that a loop
    blocked reading the other end of that pipe wakes up; it takes no lock and raises
    nothing, so it is safe wherever the main thread is interrupted.
    """

    def __init__(self, wake_fd: int) -> None:
        self._wake_fd = wake_fd
        self._received: list[int] = []

    def collecting(self, *sigs: signal.Signals) -> contextlib.AbstractContextManager[None]:
        """Collect ``sigs`` (instead of their usual effect) while the block runs."""

        def collect(signum: int, _frame: FrameType | None) -> None:
            self._received.append(signum)
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_fd, b"s")

        return _signals_handled_by(collect, *sigs)

    def take(self) -> list[int]:
        """The signals received since the last call, oldest first."""
        taken, self._received = self._received, []
        return taken
