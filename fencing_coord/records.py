"""The plain values the API returns about a lock or an election (:class:`LockState`,
:class:`Leader`) and about a backend (:class:`Capabilities`).

Each behaves as a frozen dataclass (equality, hash, repr, assignment refused, pickling)
but is written out (:class:`~fencing_coord.typeless.FrozenValue`): making dataclasses
cost milliseconds on the path of every process's first grant (issue 13: startup)."""

from __future__ import annotations

from .typeless import FrozenValue

__all__ = ["Capabilities", "Leader", "LockState"]


class LockState(FrozenValue):
    """A snapshot of one lock: who holds it with which token, and who waits, in order."""

    __match_args__ = ("name", "holder", "token", "waiters")

    name: str
    holder: str | None
    token: int | None
    waiters: tuple[str, ...] = ()

    def __init__(self, name: str, holder: str | None, token: int | None, waiters: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "holder", holder)
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "waiters", waiters)


class Leader(FrozenValue):
    """Who leads an election: identity, advertised value and the term's fencing token."""

    __match_args__ = ("identity", "value", "token")

    identity: str
    value: bytes
    token: int

    def __init__(self, identity: str, value: bytes, token: int) -> None:
        object.__setattr__(self, "identity", identity)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "token", token)


class Capabilities(FrozenValue):
    """What a backend can do beyond the core contract; the conformance suite skips
    tests of a capability a backend lacks, with the reason given here."""

    __match_args__ = ("fifo", "injectable_clock", "multiprocess")

    #: Waiters are granted the lock in arrival order.
    fifo: bool = True
    #: Leases are measured on a clock the caller injects (expiry tested without sleeping).
    injectable_clock: bool = False
    #: Other processes can contend (the service is outside this process).
    multiprocess: bool = True

    def __init__(self, fifo: bool = True, injectable_clock: bool = False, multiprocess: bool = True) -> None:
        object.__setattr__(self, "fifo", fifo)
        object.__setattr__(self, "injectable_clock", injectable_clock)
        object.__setattr__(self, "multiprocess", multiprocess)
