"""fencing-coord: distributed locks that are safe for correctness.

A lease-based lock alone is not mutual exclusion: a paused holder wakes up after its
lease expired and writes anyway. Every grant here carries a fencing token that the
coordination service makes strictly larger than every earlier grant of the lock, and
:class:`FencedResource` refuses writes whose token is lower than the highest it has
accepted, atomically with the write.

    >>> import fencing_coord as fc
    >>> with fc.connect("memory://doc") as backend:
    ...     grant = backend.acquire("orders", timeout=5)
    ...     grant.token
    1
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from . import stores
from .bound import BoundResource
from .config import BackendURL, connect, parse_url
from .election import Election, Leader, LeadershipEvent, ObserverHandle, Term
from .errors import (
    BackendUnavailable,
    ConfigurationError,
    FencingCoordError,
    InvalidArgument,
    InvalidArgumentType,
    LockLost,
    LockTimeout,
    NotSupported,
    RowNotFound,
    StaleTokenError,
    TokenSpaceExhausted,
)
from .gate import FencedResource, UnfencedResource, WriteResult
from .interface import Capabilities, Grant, LockBackend, LockState

if TYPE_CHECKING:
    from . import aio

__version__ = "0.1.0"

# A library never writes to stderr by itself: without this handler, Python's last-resort
# handler would print our warnings (a lease lost, a session timeout the server lowered)
# in a program that configured no logging. A program that configures logging sees them
# through its own handlers as before.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "BackendURL",
    "BackendUnavailable",
    "BoundResource",
    "Capabilities",
    "ConfigurationError",
    "Election",
    "FencedResource",
    "FencingCoordError",
    "Grant",
    "InvalidArgument",
    "InvalidArgumentType",
    "Leader",
    "LeadershipEvent",
    "LockBackend",
    "LockLost",
    "LockState",
    "LockTimeout",
    "NotSupported",
    "ObserverHandle",
    "RowNotFound",
    "StaleTokenError",
    "Term",
    "TokenSpaceExhausted",
    "UnfencedResource",
    "WriteResult",
    "__version__",
    "aio",
    "connect",
    "parse_url",
    "stores",
]


def __getattr__(name: str) -> Any:
    # The asyncio API is imported when first named (``fc.aio``): asyncio and the async
    # stores would cost every blocking program's import.
    if name == "aio":
        return importlib.import_module(".aio", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
