"""A queue as any client sees it: its contenders in order with their data, for
``describe`` (a lock's holder and waiters) and ``leader`` (an election's first candidate).

Every listing follows a ``sync`` pipelined with ``getChildren``: requests of one session
are served in order, so the listing reflects every write acknowledged to any client
before the call, even when our server is a lagging follower. The data of the contenders
wanted are then read in one round trip; if one of them left in between, the queue is
listed again (each retry follows a real departure), so the first one returned was first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import NoNodeError

from .kazoo_results import presend
from .names import LEGACY, Contender, queue_contenders, queue_order
from .session import Session

__all__ = ["Member", "head", "members"]

# How often describe() lists a queue again when a contender leaves while it is read.
_MEMBERS_ATTEMPTS = 10


@dataclass(frozen=True)
class Member:
    """A contender as others see it: its node's name, data and creation zxid (token)."""

    contender: Contender
    data: bytes
    czxid: int

    @property
    def identity(self) -> str:
        """Who it is: the identity our contenders store, or for another client's node
        ``<flavor>:<node name>`` (``kazoo:...``, ``curator:...``, ``zookeeper-recipe:...``)."""
        if self.contender.ours or self.contender.flavor == LEGACY:
            return self.data.decode("utf-8", "replace")
        return f"{self.contender.flavor}:{self.contender.node}"


def members(session: Session, parent: str, kind: str) -> list[Member]:
    """The contenders under ``parent`` (ours of ``kind`` and other clients'), in queue order, with their data
    (listed again, up to 10 times, when one leaves while they are read). Two round trips."""
    return _read(session, parent, kind, count=None, attempts=_MEMBERS_ATTEMPTS)


def head(session: Session, parent: str, kind: str) -> Member | None:
    """The first contender of ``kind`` under ``parent`` with its data, or None when
    there is none. Two round trips (again when the first one left in between)."""
    first = _read(session, parent, kind, count=1, attempts=None)
    return first[0] if first else None


def _read(session: Session, parent: str, kind: str, count: int | None, attempts: int | None) -> list[Member]:
    client = session.client

    def listing() -> Any:
        client.sync_async(parent)
        return client.get_children_async(parent)

    found: list[Member] = []
    tried = 0
    while attempts is None or tried < attempts:
        tried += 1
        try:
            children = session.request(f"read the queue of {parent}", listing, expected=(NoNodeError,))
        except NoNodeError:
            return []
        wanted = queue_order(queue_contenders(children, kind))[:count]
        reads = [presend(session.current_epoch, functools.partial(client.get_async, f"{parent}/{c.node}"))
                 for c in wanted]
        found = []
        for contender, read in zip(wanted, reads, strict=True):
            try:
                data, stat = session.request(f"read {parent}/{contender.node}", read, expected=(NoNodeError,))
            except NoNodeError:
                break
            found.append(Member(contender, bytes(data), int(stat.czxid)))
        else:
            return found
    return found
