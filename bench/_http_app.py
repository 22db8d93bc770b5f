"""The application ``bench/gate.py`` serves with uvicorn to time the HTTP receiver.

``FC_GATE``: ``none`` (no middleware: the baseline), ``memory`` (a FencedResource on a
MemoryStore), ``store:PATH`` (a FencedResource on SQLiteStore(PATH)) or ``sqlite:PATH``
(SQLiteAdmission, the handler's transaction). ``POST /work`` answers a small JSON body.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fencing_coord.gate import FencedResource
from fencing_coord.http import FencingMiddleware, SQLiteAdmission
from fencing_coord.stores import MemoryStore, SQLiteStore


async def work(request: Request) -> Response:
    return JSONResponse({"ok": True})


def make_app() -> Starlette:
    app = Starlette(routes=[Route("/work", work, methods=["POST"])])
    kind, _, path = os.environ["FC_GATE"].partition(":")
    if kind == "memory":
        app.add_middleware(FencingMiddleware, gate=FencedResource(MemoryStore()))
    elif kind == "store":
        app.add_middleware(FencingMiddleware, gate=FencedResource(SQLiteStore(path)))
    elif kind == "sqlite":
        app.add_middleware(FencingMiddleware, gate=SQLiteAdmission(path))
    return app
