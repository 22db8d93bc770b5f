"""A TCP proxy on 127.0.0.1 in front of a real server, to put faults between a client
and that server: the server still does the real work, only the wire misbehaves.

- ``drop_reply_to``: a request whose first bytes start with it (``b"PUT "``) reaches the
  server, and when the server answers, the client's connection is closed instead: the
  client sent its request and never learns the outcome (``replies_dropped`` counts them;
  an interim ``100 Continue`` is still relayed, so the body is sent).
- ``rewrite``: every chunk from the client passes through it (for example to strip a
  header, as a service that ignores it would).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.drop_reply_to: bytes | None = None
        self.rewrite: Callable[[bytes], bytes] | None = None
        self.replies_dropped = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            doomed = threading.Event()  # set when this connection's current request is to lose its reply
            threading.Thread(target=self._client_to_server, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(upstream, client, doomed), daemon=True).start()

    def _client_to_server(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.drop_reply_to is not None and data.startswith(self.drop_reply_to):
                    doomed.set()
                if self.rewrite is not None:
                    data = self.rewrite(data)
                upstream.sendall(data)
        _close(client, upstream)

    def _server_to_client(self, upstream: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                # An interim "100 Continue" lets the client send the body: pass it on.
                if doomed.is_set() and not data.startswith(b"HTTP/1.1 100 "):
                    self.replies_dropped += 1
                    break
                client.sendall(data)
        _close(client, upstream)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
