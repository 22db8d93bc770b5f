"""What a ZooKeeper grant holds: its contender node.

A grant's token is the creation zxid (``czxid``) of its node: ZooKeeper's own 64-bit
transaction id, the exact analogue of etcd's create revision. Within one parent, nodes
are created (and so granted) in sequence-number order, and their czxids are in the same
order, so the token orders grants exactly as the sequence number does. Unlike the
per-parent 32-bit sequence counter, the zxid is ZooKeeper's order of all its transactions
and only grows (its high half is the leader epoch, which every election raises): not reset
by a server restart, a leader failover or a session loss, nor when a queue's parent is
deleted and created again out of band (every node of the new parent is created after every
node of the old one was deleted). Tokens fit a signed 64-bit integer, as SQLite and
PostgreSQL stores need. Only wiping the whole ensemble's data would reset them.
"""

from __future__ import annotations

from collections.abc import Callable

from fencing_coord.grant import Grant

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from fencing_coord.typeless import NamedTuple

__all__ = ["Entry", "ZooKeeperGrant"]


class Entry(NamedTuple):
    """Our contender node in one queue (a lock's or an election's parent)."""

    parent: str
    node: str
    seq: int
    czxid: int
    owner: int  # the session that owns the ephemeral node

    @property
    def path(self) -> str:
        return f"{self.parent}/{self.node}"


class ZooKeeperGrant(Grant):
    """A grant of a lock, or a term of an election, on ZooKeeper: the node it holds.

    ``token`` is the node's czxid. ``parent_czxid`` is the czxid of the queue's parent when
    the grant was made (a different one later means the parent was recreated out of band).
    ``armed`` turns True once the node's watch is set; :meth:`watch` is that watch.
    """

    __slots__ = ("_changed", "armed", "entry", "granted_at", "parent_czxid")

    def __init__(self, name: str, holder: str, *, owner: object, probe: Callable[[Grant], None], entry: Entry,
                 parent_czxid: int, granted_at: float, changed: Callable[[ZooKeeperGrant], None]) -> None:
        """``changed(grant)`` is called, from kazoo's thread, when the node's watch fires."""
        super().__init__(name, entry.czxid, holder, owner=owner, probe=probe)
        self.entry = entry
        self.parent_czxid = parent_czxid
        self.granted_at = granted_at
        self.armed = False
        self._changed = changed

    def watch(self, _event: object) -> None:
        """The watch on the node (kazoo's thread): hand the check on, never block.

        One bound method per grant: kazoo keeps a set of watchers per path, so setting
        it again does not add a second one."""
        if not self.released:
            self._changed(self)
