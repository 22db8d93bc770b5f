"""Leader election with fencing term tokens (issue 6 fills this in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import NotSupported

if TYPE_CHECKING:
    from .interface import LockBackend

__all__ = ["Election"]


class Election:
    """An election called ``name`` on ``backend``."""

    def __init__(self, backend: LockBackend, name: str) -> None:
        raise NotSupported("leader election is not implemented yet")
