"""Fencing over HTTP (pattern D): receivers that admit requests by their fencing token,
and clients that attach a grant's token to every request.

Receivers (no third-party package needed):

- :class:`FencingMiddleware` (ASGI: Starlette, FastAPI) and
  :class:`FencingWSGIMiddleware` (WSGI: Flask, Django);
- admissions: :class:`StoreAdmission` (any store, via a FencedResource),
  :class:`SQLiteAdmission` and :class:`PostgresAdmission` (atomic with the handler's SQL);
- :func:`fenced` gives the handler its :class:`FencedRequest`.

Clients (``pip install 'fencing-coord[http]'``; imported on first use):

- :class:`HttpxFencingAuth` (httpx, sync and async), :class:`RequestsFencingAuth`.

The headers and status codes are in :mod:`.protocol`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .admission import Admission, FencedRequest, StoreAdmission, Ticket
from .asgi import FencingMiddleware, fenced
from .protocol import ERROR_HEADER, RESOURCE_HEADER, TOKEN_HEADER
from .sql import PostgresAdmission, SQLiteAdmission
from .wsgi import FencingWSGIMiddleware

if TYPE_CHECKING:
    from .httpx_auth import HttpxFencingAuth
    from .requests_auth import RequestsFencingAuth

__all__ = [
    "ERROR_HEADER",
    "RESOURCE_HEADER",
    "TOKEN_HEADER",
    "Admission",
    "FencedRequest",
    "FencingMiddleware",
    "FencingWSGIMiddleware",
    "HttpxFencingAuth",
    "PostgresAdmission",
    "RequestsFencingAuth",
    "SQLiteAdmission",
    "StoreAdmission",
    "Ticket",
    "fenced",
]

_LAZY = {
    "HttpxFencingAuth": "fencing_coord.http.httpx_auth",
    "RequestsFencingAuth": "fencing_coord.http.requests_auth",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
