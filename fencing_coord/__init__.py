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

# The exceptions are imported now (one small module without imports): ``except
# fc.LockTimeout`` is everywhere. Every other public name is imported when first used.
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

# Not ``from typing import TYPE_CHECKING``: importing typing would double the cost of
# ``import fencing_coord``; mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from . import aio, stores
    from .bound import BoundResource
    from .config import BackendURL, connect, parse_url
    from .election import Election, Leader, LeadershipEvent, ObserverHandle, Term
    from .gate import FencedResource, UnfencedResource, WriteResult
    from .interface import Capabilities, Grant, LockBackend, LockState

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

# The other public names are imported when first used (PEP 562), so that ``import fencing_coord``
# costs almost nothing and a program pays only for what it uses: connect() does not load
# the gate, the audit trail or the stores (issue 13: import <= 30 ms). The module that
# defines each name:
_HOME = {
    "BackendURL": "config",
    "BoundResource": "bound",
    "Capabilities": "interface",
    "Election": "election",
    "FencedResource": "gate",
    "Grant": "interface",
    "Leader": "election",
    "LeadershipEvent": "election",
    "LockBackend": "interface",
    "LockState": "interface",
    "ObserverHandle": "election",
    "Term": "election",
    "UnfencedResource": "gate",
    "WriteResult": "gate",
    "connect": "config",
    "parse_url": "config",
}


if not TYPE_CHECKING:  # mypy sees the imports above; an unknown name stays an error for it

    def __getattr__(name: str) -> Any:
        if name in ("aio", "stores"):
            # asyncio and the async stores would cost every blocking program's import.
            return importlib.import_module(f".{name}", __name__)
        home = _HOME.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{home}", __name__), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
