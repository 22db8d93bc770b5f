"""The application the HTTP tests serve with uvicorn (``--factory tests.http.app:make_app``).

``FC_GATE`` chooses the gate: ``sqlite:PATH`` (SQLiteAdmission), ``postgres:DSN``
(PostgresAdmission) or ``store:PATH`` (a FencedResource on SQLiteStore(PATH)).
``FC_FIFO_DIR``, when set, holds two named pipes that ``POST /hold/{key}`` uses to tell
the test it is inside its transaction (``entered``) and to wait for its go (``release``).

Routes (every fenced one answers JSON ``{"token", "highest_before"}``):

- ``POST /ledger/{key}``: stores the body under ``key`` (in the admission's transaction,
  or through the bound resource), with the token it came with;
- ``GET /ledger/{key}``: unfenced read, ``{"value", "token"}`` (404 when absent);
- ``POST /fail/{key}``: stores, then raises; ``POST /error/{key}``: stores, then answers 500;
- ``POST /hold/{key}``: stores, then waits for the test (see above);
- ``GET /plain``: a trivial response, the benchmark's baseline;
- ``POST /conflict``: the application's own 409; ``POST /echo``: the auth and fence headers.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fencing_coord.gate import FencedResource
from fencing_coord.http import Admission, FencedRequest, FencingMiddleware, PostgresAdmission, SQLiteAdmission, fenced
from fencing_coord.stores import SQLiteStore

LEDGER = "CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, value TEXT NOT NULL, token BIGINT NOT NULL)"
UPSERT = ("INSERT INTO ledger (key, value, token) VALUES (?, ?, ?)"
          " ON CONFLICT (key) DO UPDATE SET value = excluded.value, token = excluded.token")


def open_gate(spec: str) -> Admission | FencedResource:
    kind, _, target = spec.partition(":")
    if kind == "sqlite":
        import sqlite3

        with sqlite3.connect(target) as conn:
            conn.execute(LEDGER)
        return SQLiteAdmission(target)
    if kind == "postgres":
        import psycopg

        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(LEDGER)
        return PostgresAdmission(target)
    if kind == "store":
        return FencedResource(SQLiteStore(target))
    raise ValueError(f"unknown FC_GATE {spec!r}")


def _store(request: Request, key: str, value: str) -> FencedRequest:
    handle = fenced(request)
    assert handle is not None, "a POST always comes fenced"
    if handle.connection is not None:
        sql = UPSERT if os.environ["FC_GATE"].startswith("sqlite") else UPSERT.replace("?", "%s")
        handle.connection.execute(sql, (key, value, handle.token))
    else:
        assert handle.bound is not None
        handle.bound.write(key, f"{value}|{handle.token}".encode()).raise_for_status()
    return handle


def _answer(handle: FencedRequest) -> JSONResponse:
    return JSONResponse({"token": handle.token, "highest_before": handle.highest_before})


async def post_ledger(request: Request) -> Response:
    return _answer(_store(request, request.path_params["key"], (await request.body()).decode()))


async def get_ledger(request: Request) -> Response:
    gate: Any = request.app.state.gate
    key = request.path_params["key"]
    if isinstance(gate, FencedResource):
        raw = gate.read(request.query_params["resource"], key)
        if raw is None:
            return JSONResponse({}, status_code=404)
        value, _, token = raw.decode().rpartition("|")
        return JSONResponse({"value": value, "token": int(token)})
    spec = os.environ["FC_GATE"]
    if spec.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(spec.partition(":")[2]) as conn:
            row = conn.execute("SELECT value, token FROM ledger WHERE key = ?", (key,)).fetchone()
    else:
        import psycopg

        with psycopg.connect(spec.partition(":")[2]) as pg:
            row = pg.execute("SELECT value, token FROM ledger WHERE key = %s", (key,)).fetchone()
    if row is None:
        return JSONResponse({}, status_code=404)
    return JSONResponse({"value": row[0], "token": int(row[1])})


async def fail(request: Request) -> Response:
    _store(request, request.path_params["key"], "from a failed handler")
    raise RuntimeError("the handler failed after writing")


async def error(request: Request) -> Response:
    _store(request, request.path_params["key"], "from a 500")
    return PlainTextResponse("failed", status_code=500)


async def hold(request: Request) -> Response:
    handle = _store(request, request.path_params["key"], (await request.body()).decode())
    fifos = Path(os.environ["FC_FIFO_DIR"])
    await asyncio.to_thread((fifos / "entered").write_text, "in\n")
    await asyncio.to_thread((fifos / "release").read_text)
    return _answer(handle)


async def plain(request: Request) -> Response:
    return PlainTextResponse("ok")


async def conflict(request: Request) -> Response:
    """The application's own 409, which no client may take for a fencing refusal."""
    return JSONResponse({"error": "duplicate order"}, status_code=409)


async def echo(request: Request) -> Response:
    return JSONResponse({name: request.headers.get(name) for name in ("authorization", "fencing-token",
                                                                      "fencing-resource")})


def make_app() -> Starlette:
    gate = open_gate(os.environ["FC_GATE"])
    routes = [
        Route("/ledger/{key}", post_ledger, methods=["POST"]),
        Route("/ledger/{key}", get_ledger, methods=["GET"]),
        Route("/fail/{key}", fail, methods=["POST"]),
        Route("/error/{key}", error, methods=["POST"]),
        Route("/hold/{key}", hold, methods=["POST"]),
        Route("/plain", plain, methods=["GET", "POST"]),
        Route("/conflict", conflict, methods=["POST"]),
        Route("/echo", echo, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.gate = gate
    if os.environ.get("FC_UNFENCED") != "1":
        app.add_middleware(FencingMiddleware, gate=gate, required=lambda scope: scope["method"] != "GET")
    return app
