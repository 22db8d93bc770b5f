"""The plain values the API returns about a lock or an election: :class:`LockState`,
:class:`Leader`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Leader", "LockState"]


@dataclass(frozen=True)
class LockState:
    """A snapshot of one lock: who holds it with which token, and who waits, in order."""

    name: str
    holder: str | None
    token: int | None
    waiters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Leader:
    """Who leads an election: identity, advertised value and the term's fencing token."""

    identity: str
    value: bytes
    token: int
