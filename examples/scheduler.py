"""One scheduler leads; every job it runs writes through the gate with its term token.

    python examples/scheduler.py etcd://127.0.0.1:2379 [runs]

Run it in several terminals: one process leads, the others wait their turn. Kill the
leader (or SIGSTOP it past its TTL) and another takes over with a larger term token; a
paused leader that wakes up has its writes refused by the resource.
"""

from __future__ import annotations

import sys

import fencing_coord as fc


def run_scheduler(url: str, db: str = "scheduler.db", runs: int = 3) -> list[int]:
    """Lead the "scheduler" election, run ``runs`` jobs while leader, resign; return the
    tokens under which each job's result was accepted."""
    resource = fc.FencedResource(fc.stores.SQLiteStore(db))
    accepted: list[int] = []

    def lead(lost: fc.LeadershipEvent) -> None:
        token = lost.term.token
        for run in range(runs):
            if lost.is_set():  # leadership gone: stop before doing more work
                return
            result = resource.write("scheduler", "last-run", f"run {run} by term {token}".encode(), token=token)
            try:
                result.raise_for_status()
            except fc.StaleTokenError:
                return  # a newer leader has written: we were deposed while paused
            accepted.append(token)

    with fc.connect(url) as backend:
        backend.election("scheduler").run(lead, timeout=60, value=b"scheduler@" + backend.identity.encode())
    return accepted


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "memory://scheduler"
    print(run_scheduler(url, runs=int(sys.argv[2]) if len(sys.argv) > 2 else 3))
