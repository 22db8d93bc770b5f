"""The plain values the API returns about a lock or an election (:class:`LockState`,
:class:`Leader`) and about a backend (:class:`Capabilities`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Capabilities", "Leader", "LockState"]


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


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond the core contract; the conformance suite skips
    tests of a capability a backend lacks, with the reason given here."""

    #: Waiters are granted the lock in arrival order.
    fifo: bool = True
    #: Leases are measured on a clock the caller injects (expiry tested without sleeping).
    injectable_clock: bool = False
    #: Other processes can contend (the service is outside this process).
    multiprocess: bool = True
