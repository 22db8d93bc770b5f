"""Signal handling of ``fencing-coord run``: while it waits for its lock, SIGTERM and
SIGHUP end it (:class:`Terminated`); while its command runs, SIGINT, SIGTERM and SIGHUP
are passed on to the command's process group."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["Terminated", "forward_signals", "raise_on_signals"]


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


def forward_signals(pgid: int) -> contextlib.AbstractContextManager[None]:
    """Pass SIGINT/SIGTERM/SIGHUP on to process group ``pgid`` while the block runs."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)

    return _signals_handled_by(forward, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
