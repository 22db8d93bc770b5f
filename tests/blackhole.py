"""A hung server for timeout tests: a TCP listener that accepts every connection and
never answers, as a stopped server process (or a proxy that lost its upstream) does."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self


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
