"""Leader election on ZooKeeper: reading the leader and watching it.

An election is the lock's queue recipe in the ``elections`` subtree, so a lock and an
election of one name never meet::

    /fencing-coord/<namespace>/elections/<name>/_c_<nonce>-candidate__lock__<seq>

one ephemeral-sequential node per candidate (named so that kazoo's ``Election`` counts it,
and ours count kazoo's), holding
:func:`~fencing_coord.spi.encode_candidate` of its identity and value. The first candidate
(lowest sequence number, in serial arithmetic) is the leader, and its term's token is its
node's czxid, like a lock grant's, with every guarantee of one (its term is lost, resigned
and reported exactly like a grant). ``proclaim(value)`` rewrites the leader's own node
(``setData``, unversioned: only its own session writes it, and the node's nonce makes it a
path no other term ever has); the czxid, and so the token, is unchanged.

``leader()`` costs two round trips (:func:`~.members.head`). An observer holds a child
watch on the election's parent (an ``exists`` watch while the parent does not exist) and a
data watch on the leader's node (so a proclaim is seen): :class:`LeaderWatch`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from kazoo.exceptions import ConnectionClosedError, KazooException, NoNodeError
from kazoo.protocol.states import EventType

from fencing_coord.records import Leader
from fencing_coord.spi import decode_candidate

from .members import head
from .names import CANDIDATE_KIND, LEGACY, queue_contenders, queue_order
from .session import RETRYABLE, Session

__all__ = ["LeaderWatch", "read_leader"]

_log = logging.getLogger(__name__)


def read_leader(session: Session, parent: str) -> Leader | None:
    """The leader of the election whose parent is ``parent``, or None. Raises
    :class:`BackendUnavailable` when a node of ours does not hold a candidate record. A
    leader of another client (kazoo's ``Election``) is named ``<flavor>:<node name>``, its
    node's data (kazoo: its identifier) as the value."""
    first = head(session, parent, CANDIDATE_KIND)
    if first is None:
        return None
    if not first.contender.ours and first.contender.flavor != LEGACY:
        return Leader(first.identity, first.data, first.czxid)
    identity, value = decode_candidate(first.data, f"{parent}/{first.contender.node}")
    return Leader(identity, value, first.czxid)


class LeaderWatch:
    """One ``_watch_leader`` subscription: a child watch on an election's parent (an
    ``exists`` watch while the parent does not exist) and a data watch on the node of its
    first candidate, so a new leader, a resignation and a proclaim all fire one.

    Everything runs on kazoo's threads through asynchronous requests, so nothing here
    blocks them: a watch that fires sends the requests that set the watches again, and
    ``notify()`` is called once they are answered, so the read the observer then makes
    sees every change the new watches cannot report. A connection loss ends a round
    silently (kazoo drops every watch with the connection): the backend's monitor calls
    :meth:`arm` again on every reconnection, which ends with ``notify()`` in turn.
    """

    def __init__(self, client: Any, parent: str, notify: Callable[[], None]) -> None:
        self.client = client
        self.parent = parent
        self.notify = notify
        self.stopped = False

    def arm(self) -> None:
        """Set the watches (again) and then call ``notify()``. Never blocks."""
        if not self.stopped:
            self._send(functools.partial(self.client.get_children_async, self.parent, watch=self._fired),
                       self._listed)

    def stop(self) -> None:
        """No ``notify()`` after this; watches already set fire once more, into nothing."""
        self.stopped = True

    def _send(self, start: Callable[[], Any], then: Callable[[Any], None]) -> None:
        try:
            result = start()
        except KazooException:  # pragma: no cover - kazoo fails requests through their result
            return
        result.rawlink(then)

    def _fired(self, event: Any) -> None:
        # kazoo's watch thread. EventType.NONE: the connection was lost or closed and kazoo
        # dropped its watches; arm() runs again once connected.
        if not self.stopped and event.type != EventType.NONE:
            self.arm()

    def _failed(self, exc: BaseException) -> None:
        """End this round after a failed request."""
        if isinstance(exc, (*RETRYABLE, ConnectionClosedError)):
            return  # re-armed on reconnection (or the backend was closed)
        _log.warning("watching the leader of %s failed: %r", self.parent, exc)
        self.notify()  # the observer's own read reports what is wrong

    def _listed(self, result: Any) -> None:
        if self.stopped:
            return
        exc = result.exception
        if isinstance(exc, NoNodeError):
            # Nobody has stood yet: be told when the parent is created.
            self._send(functools.partial(self.client.exists_async, self.parent, watch=self._fired),
                       self._parent_checked)
            return
        if exc is not None:
            self._failed(exc)
            return
        ordered = queue_order(queue_contenders(result.value, CANDIDATE_KIND))
        if not ordered:
            self.notify()
            return
        first = f"{self.parent}/{ordered[0].node}"
        self._send(functools.partial(self.client.exists_async, first, watch=self._fired), self._armed)

    def _parent_checked(self, result: Any) -> None:
        if self.stopped:
            return
        if result.exception is None and result.value is not None:
            # The parent was created after it was listed (a first campaign creates it and
            # its node in one go): the watch just set is on its data and reports no child,
            # so list it again, with a child watch, before anyone is told.
            self.arm()
            return
        self._armed(result)

    def _armed(self, result: Any) -> None:
        if self.stopped:
            return
        if result.exception is not None:
            self._failed(result.exception)
            return
        self.notify()

