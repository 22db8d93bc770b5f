"""The pause scenario, with real processes: why a lock needs a fencing token.

One run of the scenario on one backend and one resource:

1. A *holder* process acquires the lock, writes through the resource with its token,
   checks that it still holds the lock, and is then paused (``SIGSTOP``) before its next
   write, as a GC pause or a swapped-out VM would pause it.
2. Its lease (etcd) or session (ZooKeeper) expires on the server: a paused process sends
   no keepalives. A *successor* process, queued behind the holder, is granted the lock
   with a larger token, writes, and exits.
3. The holder is resumed (``SIGCONT``) and performs the write it was about to do, with
   its old token.

Through an :class:`~fencing_coord.UnfencedResource` the late write is accepted and the
final value is the stale holder's: **corrupted**. Through a
:class:`~fencing_coord.FencedResource` it is refused (``stale token 7 < 9``) and the
successor's value stands: **refused**. The processes share one SQLite database
(:class:`~fencing_coord.stores.SQLiteStore`), which is what makes the check-and-write
atomic across them.

:func:`run_demo` runs the scenario on every backend, unfenced then fenced, and prints a
timeline per run and a verdict table; ``fencing-coord demo`` is its command line. The
holder and successor are this module run as a program (``python -m fencing_coord.demo
holder|successor ...``); they report what they do as JSON lines on stdout, stamped with
``time.monotonic()``, which is one clock for every process of the machine.
"""

from __future__ import annotations

from .report import local_servers, print_metrics, print_timeline, print_verdicts, run_demo
from .scenario import (
    CORRUPTED,
    FIRST_VALUE,
    KEY,
    LATE_VALUE,
    REFUSED,
    RESOURCE,
    SUCCESSOR_VALUE,
    UNEXPECTED,
    DemoError,
    Event,
    Outcome,
    backend_label,
    run_scenario,
)

__all__ = [
    "CORRUPTED",
    "FIRST_VALUE",
    "KEY",
    "LATE_VALUE",
    "REFUSED",
    "RESOURCE",
    "SUCCESSOR_VALUE",
    "UNEXPECTED",
    "DemoError",
    "Event",
    "Outcome",
    "backend_label",
    "local_servers",
    "print_metrics",
    "print_timeline",
    "print_verdicts",
    "run_demo",
    "run_scenario",
]
