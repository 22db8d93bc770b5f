"""``Uvicorn``: the test application (:mod:`tests.http.app`) served by a real uvicorn
process on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from fencing_coord.servers import ManagedProcess, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Uvicorn:
    """``python -m uvicorn --factory tests.http.app:make_app`` with ``FC_GATE=gate``."""

    def __init__(self, gate: str, *, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkdtemp(prefix="fencing-coord-uvicorn-")) / "uvicorn.log"
        argv = [sys.executable, "-m", "uvicorn", "--factory", "tests.http.app:make_app", "--host", "127.0.0.1",
                "--port", str(self.port), "--log-level", "warning", "--no-access-log", "--workers", str(workers)]
        self.process = ManagedProcess(argv, self.log, env={**os.environ, "FC_GATE": gate, **(env or {})}, cwd=ROOT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Uvicorn:
        self.process.start()
        try:
            wait_until(self._ready, 60, f"uvicorn on port {self.port}")
        except BaseException:
            self.process.stop()
            raise
        return self

    def _ready(self) -> bool:
        if not self.process.running():
            raise AssertionError(f"uvicorn exited:\n{self.process.log_tail()}")
        return port_open("127.0.0.1", self.port)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.process.stop()
