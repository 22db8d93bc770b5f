"""A local S3 service for tests and benchmarks: moto's S3 server in a child process.

    with MotoS3Server() as server:
        server.create_bucket("fc")
        store = S3Store("fc", endpoint_url=server.endpoint, session=server.session())

moto stands in for AWS S3 in the tests. Its server checks ``If-Match`` /
``If-None-Match`` and then writes in two steps; run as ``python -m moto.server`` (one
thread per connection) two conditional writes can both pass the check. Real S3 applies
each conditional write atomically, so the child here (``python -m
fencing_coord.servers.moto_s3 --port N``) runs moto's own WSGI application behind one
lock: still one thread per connection, but one request at a time. Needs
``moto[server]`` (in the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable
from . import ManagedProcess, free_port, port_open, wait_until

if TYPE_CHECKING:
    import boto3

__all__ = ["MotoS3Server"]

#: Credentials moto accepts (it accepts any); region of the buckets made here.
ACCESS_KEY, SECRET_KEY, REGION = "fencing-coord-test", "fencing-coord-test-secret", "us-east-1"


class MotoS3Server:
    """moto's S3 server on a free port of 127.0.0.1, in its own process."""

    def __init__(self) -> None:
        self.port = 0
        self.base_dir: Path | None = None
        self.process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoS3Server:
        """Start the child; return ``self`` once it accepts connections."""
        self.base_dir = Path(tempfile.mkdtemp(prefix="fencing-coord-moto-"))
        self.port = free_port()
        argv = [sys.executable, "-m", __name__, "--port", str(self.port)]
        self.process = ManagedProcess(argv, self.base_dir / "moto.log")
        self.process.start()
        try:
            wait_until(self._ready, timeout, f"moto S3 on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if not self.process.running():
            raise BackendUnavailable(f"moto S3 exited during startup:\n{self.process.log_tail()}")
        return port_open("127.0.0.1", self.port)

    def session(self) -> boto3.Session:
        """A boto3 session with credentials moto accepts."""
        import boto3

        return boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def create_bucket(self, name: str) -> None:
        client = self.session().client("s3", endpoint_url=self.endpoint)
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the child and delete its directory. Idempotent."""
        process, self.process = self.process, None
        if process is not None:
            process.stop()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serialized(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    """``app`` serving one request at a time, its whole response produced under the lock."""
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            return list(app(environ, start_response))

    return serve


def main(argv: list[str] | None = None) -> None:
    """The child: moto's S3 application, one request at a time, on 127.0.0.1:--port."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    class Handler(MotoRequestHandler):
        # werkzeug writes a reply's headers and body separately: with Nagle's algorithm on,
        # the body then waits for the client's delayed ACK, some 40 ms per request.
        disable_nagle_algorithm = True

    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", args.port, serialized(app), threaded=True, request_handler=Handler)


if __name__ == "__main__":
    main()
