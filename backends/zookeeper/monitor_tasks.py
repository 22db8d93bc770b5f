"""The messages that the ZooKeeper monitor's thread takes from its queue (see
:mod:`.monitor`): kazoo's threads and the backend's callers only hand these over, the
monitor's thread makes the round trips."""

from __future__ import annotations

from fencing_coord.typeless import FrozenValue

from .grant import ZooKeeperGrant
from .session import SessionState

__all__ = ["StateChanged", "Stop", "Task", "Tick", "Tidy", "Verify"]


# The messages are not dataclasses: making the five dataclasses was a noticeable part of
# connect()'s import time (issue 13). Those with fields are FrozenValues instead.


class Verify(FrozenValue):
    """Check that ``grant``'s node still exists, and watch it again (its watch fired)."""

    __slots__ = ("grant",)
    __match_args__ = ("grant",)
    grant: ZooKeeperGrant

    def __init__(self, grant: ZooKeeperGrant) -> None:
        object.__setattr__(self, "grant", grant)


class StateChanged(FrozenValue):
    """The session went to ``state``."""

    __slots__ = ("state",)
    __match_args__ = ("state",)
    state: SessionState

    def __init__(self, state: SessionState) -> None:
        object.__setattr__(self, "state", state)


class Tick:
    """Time to look at the grants again: a grant needs an earlier wake-up than the one
    due, or the thread's sleep ran out."""

    __slots__ = ()


class Tidy:
    """Nodes were handed to the janitor: delete them once connected."""

    __slots__ = ()


class Stop:
    """The backend is closing: end the thread."""

    __slots__ = ()


Task = Verify | StateChanged | Tick | Tidy | Stop
