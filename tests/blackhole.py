"""A hung server for timeout tests: a TCP listener that accepts every connection and
never answers, as a stopped server process (or a proxy that lost its upstream) does."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

import pytest

import fencing_coord as fc
from fencing_coord.deadlines import SLACK


class BlackHole:
    """Listens on a free loopback port; accepts connections, reads nothing, writes
    nothing, closes nothing until :meth:`close`. A context manager."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._accepted: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._accepted.append(conn)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for conn in self._accepted:
                conn.close()
            self._accepted.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def dead_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_calls_end_within_their_timeout(backend: fc.LockBackend, closing: fc.LockBackend, service: str) -> None:
    """With ``backend``'s server hung: acquire and campaign with timeout=1, and a
    try-once, each end (unavailable or timed out) within their timeout + SLACK; and
    ``closing`` (connected with ``timeout=1``) closes within 1 s + SLACK."""
    calls: list[tuple[str, Callable[[], object]]] = [
        ("acquire(timeout=1)", lambda: backend.acquire("orders", timeout=1)),
        ("campaign(timeout=1)", lambda: backend.election("leader").campaign(timeout=1)),
        ("acquire(timeout=0)", lambda: backend.acquire("orders", timeout=0)),
    ]
    for what, call in calls:
        limit = (0 if "=0" in what else 1) + SLACK
        started = time.monotonic()
        with pytest.raises((fc.BackendUnavailable, fc.LockTimeout)):
            call()
        took = time.monotonic() - started
        assert took < limit, f"{what} on a hung {service} took {took:.2f} s"
    started = time.monotonic()
    closing.close()
    took = time.monotonic() - started
    assert took < 1 + SLACK, f"close() with timeout=1 on a hung server took {took:.2f} s"
