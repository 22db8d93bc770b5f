"""The pause scenario end to end over HTTP: a holder process takes an etcd lock and
writes through the receiver; it is SIGSTOPped past its lease; a successor is granted the
lock by etcd and writes; the holder resumes and sends its late request, which the
receiver refuses with 409 and its client wrapper raises as StaleTokenError."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import fencing_coord as fc
from fencing_coord.http import HttpxFencingAuth
from fencing_coord.servers.etcd import EtcdServer

from .servers import ROOT, Uvicorn

pytestmark = [pytest.mark.etcd, pytest.mark.slow]


@pytest.fixture(scope="module")
def etcd_url() -> Iterator[str]:
    with EtcdServer() as server:
        yield server.url


class HttpHolder:
    def __init__(self, lock_url: str, server_url: str, resource: str, namespace: str) -> None:
        argv = [sys.executable, "-m", "tests.http.http_holder", lock_url, server_url, resource, "--ttl", "2",
                "--namespace", namespace]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        assert self.expect() == {"event": "ready"}

    def ask(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.expect()

    def expect(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the holder exited"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(60)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("gate", ["sqlite", "store"])
def test_paused_holders_late_request_is_refused_with_409(etcd_url: str, tmp_path: Path, gate: str) -> None:
    namespace, resource = f"t-{uuid.uuid4().hex[:12]}", "orders"
    with Uvicorn(f"{gate}:{tmp_path / 'state.db'}") as server, \
            fc.connect(etcd_url, ttl=2, namespace=namespace) as successor:
        holder = HttpHolder(etcd_url, server.url, resource, namespace)
        try:
            old = holder.ask("acquire")["token"]
            assert holder.ask("post from-holder") == {"event": "post", "status": 200, "error": None}

            holder.proc.send_signal(signal.SIGSTOP)  # no keepalives while it holds the lock
            grant = successor.acquire(resource, timeout=60)  # granted once etcd expired the holder's lease
            assert grant.token > old
            with httpx.Client(base_url=server.url, auth=HttpxFencingAuth(grant), timeout=30) as client:
                assert client.post(f"/ledger/{resource}", content=b"from-successor").json() == {
                    "token": grant.token, "highest_before": old}

            holder.proc.send_signal(signal.SIGCONT)
            late = holder.ask("post late-holder")
            assert late["error"] == "StaleTokenError"
            assert f"409 Conflict: stale token {old} < {grant.token}" in late["message"]
        finally:
            holder.close()
        stored = httpx.get(f"{server.url}/ledger/{resource}", params={"resource": resource}).json()
        assert stored == {"value": "from-successor", "token": grant.token}
        successor.release(grant)
