"""The WSGI receiver on a real WSGI server (the standard library's wsgiref, in a thread
of the test process), over real HTTP, with the SQLite admission."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from fencing_coord.http import FencingWSGIMiddleware, SQLiteAdmission
from fencing_coord.http.wsgi import fenced_request

from .app import LEDGER, UPSERT


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def ledger_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """POST /ledger/KEY stores the body; /fail/KEY stores, then raises; /lazy/KEY is a
    generator that calls start_response only when iterated."""
    handle = fenced_request(environ)
    assert handle is not None
    _, route, key = environ["PATH_INFO"].split("/")
    value = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
    handle.connection.execute(UPSERT, (key, value, handle.token))
    if route == "fail":
        raise RuntimeError("the handler failed after writing")
    if route == "lazy":
        return _lazy(start_response)
    start_response("200 OK", [("content-type", "text/plain")])
    return [f"stored under {handle.token}".encode()]


def _lazy(start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("content-type", "text/plain")])
    yield b"stored "
    yield b"lazily"


@pytest.fixture
def wsgi_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "wsgi.db"
    with sqlite3.connect(db) as conn:
        conn.execute(LEDGER)
    gate = SQLiteAdmission(db)
    server: WSGIServer = make_server("127.0.0.1", 0, FencingWSGIMiddleware(ledger_app, gate), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="wsgi-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", db
    finally:
        server.shutdown()
        server.server_close()
        gate.close()


def stored(db: Path, key: str) -> tuple[str, int] | None:
    with sqlite3.connect(db) as conn:
        row: tuple[str, int] | None = conn.execute("SELECT value, token FROM ledger WHERE key = ?", (key,)).fetchone()
        return row


def post(url: str, path: str, token: int | None, body: str = "") -> httpx.Response:
    headers = {"Fencing-Resource": "orders"}
    if token is not None:
        headers["Fencing-Token"] = str(token)
    return httpx.post(url + path, headers=headers, content=body.encode(), timeout=30)


def test_admits_refuses_and_commits(wsgi_url: tuple[str, Path]) -> None:
    url, db = wsgi_url
    assert post(url, "/ledger/k", 5, "from 5").text == "stored under 5"
    assert post(url, "/lazy/k", 9, "from 9").text == "stored lazily"
    stale = post(url, "/ledger/k", 7, "from 7")
    assert (stale.status_code, stale.headers["Fencing-Error"]) == (409, "stale-token")
    assert stale.json() == {"error": "stale-token", "detail": "stale token 7 < 9", "resource": "orders",
                            "token": 7, "highest_token": 9}
    missing = post(url, "/ledger/k", None)
    assert (missing.status_code, missing.headers["Fencing-Error"]) == (428, "token-required")
    assert stored(db, "k") == ("from 9", 9)


def test_a_failing_app_rolls_back(wsgi_url: tuple[str, Path]) -> None:
    url, db = wsgi_url
    assert post(url, "/fail/k", 5).status_code == 500
    assert stored(db, "k") is None
    assert post(url, "/ledger/k", 3, "from 3").status_code == 200  # the token 5 was rolled back too
    assert stored(db, "k") == ("from 3", 3)
