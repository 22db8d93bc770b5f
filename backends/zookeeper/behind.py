"""The queue's listing sent right behind our create: :class:`ListingBehind`.

A contender creates its node, then lists the queue. Both requests go out together, the
listing right behind the create, so joining a queue takes one round trip, not two:
ZooKeeper answers one session's requests in the order sent, so the listing is taken
after the create was applied and lists our node unless it was deleted since.

When that listing can stand for one sent after the create's answer. Our node's sequence
number is higher than that of every contender that existed when it was created, and
every contender created later gets a higher number still: a listing taken at any moment
while our node exists shows exactly the older contenders still alive then, whether that
moment is before or after the create's answer reached us. A listing that does *not*
show our node proves nothing (it may have been taken before the create was applied: a
create that first found no parent is sent again after the parent's creates, behind the
listing), so it is never used: the queue is listed again, as it was before, and only that
fresh listing may conclude that our node is gone. Neither is a listing answered on
another connection than the one it was sent on, nor a failed one.
"""

from __future__ import annotations

from collections.abc import Callable

from .grant import Entry
from .session import Stat

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ListingBehind"]


class ListingBehind:
    """The listing (``get_children(include_data=True)``) of a queue's parent sent behind a
    create on the connection numbered ``epoch``: kazoo's async ``result``."""

    __slots__ = ("epoch", "result")

    def __init__(self, epoch: int, result: Any) -> None:
        self.epoch = epoch
        self.result = result

    @classmethod
    def send(cls, epoch: Callable[[], int], start: Callable[[], Any]) -> ListingBehind:
        """Send ``start()``'s listing now; ``epoch()`` numbers the current connection."""
        sent_on = epoch()
        return cls(sent_on, start())

    def take(self, entry: Entry, epoch: int) -> tuple[list[str], Stat] | None:
        """The children and parent stat of this listing when it may stand for a listing
        sent now (see the module docstring): answered, without error, on connection
        ``epoch`` (the current one) where it was sent, and listing ``entry``'s node.
        Else None: list again."""
        result = self.result
        if epoch != self.epoch or not result.ready() or not result.successful():
            return None
        children, raw_stat = result.value
        if entry.node not in children:
            return None
        return list(children), Stat.of(raw_stat)
