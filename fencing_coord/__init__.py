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

from . import aio, stores
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

__version__ = "0.1.0"

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
