"""A store never reports a write accepted or refused without knowing (issue 11, item 2):
when the reply to a write, or to its commit, is lost, it raises BackendUnavailable
saying "outcome unknown". One test per store in fencing_coord/stores/, each losing the
reply in the way that store can lose it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fencing_coord.errors import BackendUnavailable
from fencing_coord.stores import MemoryStore, PostgresStore

# The backend's answer to one extended-protocol round: ReadyForQuery ('Z', length 5). In
# autocommit it comes after the commit.
READY_FOR_QUERY = b"Z\x00\x00\x00\x05"


class ReplyDropper:
    """A TCP relay between clients and PostgreSQL. Once armed with a piece of statement
    text, it forwards the statement carrying it, lets the server run and commit it (waits
    for the server's ReadyForQuery), then closes that client's connection instead of
    passing the reply on: the write happened, and the client never hears of it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.dropped = threading.Event()
        self._armed: bytes | None = None
        self._mutex = threading.Lock()
        threading.Thread(target=self._accept, name="reply-dropper", daemon=True).start()

    def arm(self, statement_text: bytes) -> None:
        with self._mutex:
            self._armed = statement_text
        self.dropped.clear()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            dropping = threading.Event()
            threading.Thread(target=self._to_server, args=(client, server, dropping), daemon=True).start()
            threading.Thread(target=self._to_client, args=(server, client, dropping), daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket, dropping: threading.Event) -> None:
        while data := _recv(client):
            with self._mutex:
                if self._armed is not None and self._armed in data:
                    self._armed = None
                    dropping.set()  # before the server can answer
            server.sendall(data)
        _shutdown(server)

    def _to_client(self, server: socket.socket, client: socket.socket, dropping: threading.Event) -> None:
        held = b""
        while data := _recv(server):
            if not dropping.is_set():
                client.sendall(data)
                continue
            held += data
            if READY_FOR_QUERY in held:  # committed; the client gets nothing of it
                self.dropped.set()  # before the client can notice
                _shutdown(client)
                client.close()
                server.close()
                return
        _shutdown(client)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _shutdown(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@contextmanager
def dropping_replies(dsn: str) -> Iterator[tuple[ReplyDropper, str]]:
    """A ReplyDropper in front of ``dsn``'s server, and the DSN that goes through it."""
    params = conninfo_to_dict(dsn)
    dropper = ReplyDropper((str(params.get("host", "127.0.0.1")), int(str(params.get("port", 5432)))))
    try:
        yield dropper, make_conninfo(dsn, host="127.0.0.1", port=str(dropper.port), sslmode="disable")
    finally:
        dropper.close()


@pytest.mark.postgres
def test_postgres_write_whose_reply_is_lost_is_outcome_unknown(postgres_dsn: str) -> None:
    with dropping_replies(postgres_dsn) as (dropper, through), PostgresStore(through) as store:
        assert store.fenced_write("orders", "k", b"v1", 1, False).accepted

        dropper.arm(b"INSERT INTO fc_resource")  # the fenced write's one statement
        with pytest.raises(BackendUnavailable, match="outcome unknown") as caught:
            store.fenced_write("orders", "k", b"v2", 2, False)
        assert dropper.dropped.is_set()
        assert caught.value.retryable

        dropper.arm(b"INSERT INTO fc_resource")  # the raise of a fenced read
        with pytest.raises(BackendUnavailable, match="outcome unknown"):
            store.fenced_read("orders", "k", 3, False)
        assert dropper.dropped.is_set()

        # Both were in fact applied: neither "accepted" nor "refused" would have been known.
        with PostgresStore(postgres_dsn) as direct:
            assert direct.highest_token("orders") == 3
            assert direct.plain_read("orders", "k") == b"v2"
        # The broken connection was dropped from the pool; the store carries on.
        assert store.fenced_write("orders", "k", b"v4", 4, False).accepted


# The child sets a file-size limit (RLIMIT_FSIZE) just above the database's files, so the
# WAL frames written by the next COMMIT fail with EFBIG: SQLite reports an I/O error from
# COMMIT and ends the transaction itself. It cannot say whether the commit frame reached
# the WAL (with a failed fsync it may have, and then counts after recovery).
SQLITE_CHILD = """
import json, os, resource, signal, sys
from fencing_coord.errors import BackendUnavailable
from fencing_coord.stores import SQLiteStore

path = sys.argv[1]
store = SQLiteStore(path)
assert store.fenced_write("orders", "k", b"small", 1, False).accepted
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
largest = max(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 4096, hard))
report = {}
for case, token in (("transaction", 2), ("single statement", 1)):
    try:
        outcome = store.fenced_write("orders", "k", os.urandom(300_000), token, False)
        report[case] = ["returned", outcome.accepted]
    except BackendUnavailable as exc:
        report[case] = ["BackendUnavailable", str(exc)]
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
report["after"] = [store.fenced_write("orders", "k", b"later", 5, False).accepted, store.highest_token("orders")]
print(json.dumps(report))
"""


def test_sqlite_commit_that_fails_is_outcome_unknown(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SQLITE_CHILD, str(tmp_path / "lost.db")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for case in ("transaction", "single statement"):  # BEGIN IMMEDIATE...COMMIT, and the one-statement rewrite
        kind, message = report[case]
        assert kind == "BackendUnavailable", report
        assert "outcome unknown" in message, report
        assert "disk I/O error" in message, report
    assert report["after"] == [True, 5]


def test_memory_store_reply_cannot_be_lost() -> None:
    """MemoryStore decides and reports in one call under one mutex: the dict assignment
    and the outcome it returns have no I/O, no commit and no connection between them, so
    the only failure possible is an exception before anything is stored. What remains to
    check is that the reported outcome is the store's decision under concurrency: every
    accepted token is the highest one stored at that moment, every refused one is lower
    than the highest it reports, and the last accepted write is what the store holds."""
    store = MemoryStore()
    reports: list[tuple[int, bool, int | None]] = []
    mutex = threading.Lock()

    def writer(offset: int) -> None:
        for token in range(offset, 400, 4):
            outcome = store.fenced_write("orders", "k", str(token).encode(), token, True)
            with mutex:
                reports.append((token, outcome.accepted, outcome.highest_before))

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = [token for token, ok, _ in reports if ok]
    assert all(before is None or token > before for token, ok, before in reports if ok)
    assert all(before is not None and token <= before for token, ok, before in reports if not ok)
    assert store.highest_token("orders") == max(accepted) == 399
    assert store.plain_read("orders", "k") == b"399"
    assert len(reports) == 400
