"""``zookeeper://`` -- locks and leader elections with fencing tokens on ZooKeeper, through kazoo.

Layout (every path below the URL's chroot)::

    /fencing-coord/<namespace>/locks/<name>/            persistent parent, never deleted by us
    /fencing-coord/<namespace>/locks/<name>/lock-<nonce>-<seq>
                                                        one ephemeral-sequential node per contender;
                                                        data: the contender's identity (UTF-8)
    /fencing-coord/<namespace>/elections/<name>/        persistent parent, never deleted by us
    /fencing-coord/<namespace>/elections/<name>/candidate-<nonce>-<seq>
                                                        one ephemeral-sequential node per candidate;
                                                        data: b"%d:" % len(identity) + identity
                                                        + value (identity UTF-8, then the value's
                                                        raw bytes), as the etcd backend stores it
    /fencing-coord/<namespace>/resources/<resource>     ZooKeeperStore: one persistent node per
                                                        fenced resource (values and highest token)

Names are escaped into one path segment (``%XX`` for ``%`` and for characters ZooKeeper
refuses in paths, such as characters outside the Basic Multilingual Plane).

The lock recipe (ours, not kazoo's ``Lock``): a contender creates its node, lists the
parent's children, and holds the lock when no contender's sequence number precedes its
own; otherwise it watches only its immediate predecessor and, woken, lists the children
again (its own node may have vanished: it then joins the queue anew). Sequence numbers
are parsed and compared as integers, never as strings (kazoo #606), in 32-bit
serial-number arithmetic (RFC 1982), so the order stays right when the parent's counter
wraps from 2^31-1 to -2^31. The ``<nonce>`` makes every node name unique, so a create
whose answer was lost with the connection can be found again, and a node is never
confused with a namesake in a parent recreated out of band.

Tokens. A grant's token is the creation zxid (``czxid``) of its lock node: ZooKeeper's
own 64-bit transaction id, the exact analogue of etcd's create revision. Within one
parent, nodes are created (and so granted) in sequence-number order, and their czxids are
in the same order, so the token orders grants exactly as the sequence number does. Unlike
the per-parent 32-bit sequence counter, the zxid is ZooKeeper's order of all its
transactions and only grows (its high half is the leader epoch, which every election
raises): not reset by a server restart, a leader failover or a session loss, nor when a
lock's parent is deleted and created again out of band (every node of the new parent is
created after every node of the old one was deleted). Tokens fit a signed 64-bit integer, as SQLite and
PostgreSQL stores need. Only wiping the whole ensemble's data would reset them.

Limits of the sequence counter. The counter (taken from the parent's ``cversion``; it
advances with every child created, and with deletions too depending on the server's
timing) is a signed 32-bit value that wraps at 2^31-1; serial arithmetic
orders contenders correctly across the wrap as long as all live contenders of a lock lie
within 2^31 sequence numbers of each other. The backend refuses before that can fail:
when a contender finds another live contender more than ``sequence_window`` (default
2^30) sequence numbers away -- a holder or waiter that has lived through a billion queue
changes -- it marks the parent as exhausted (writes a note into the parent's data, which
is otherwise empty), withdraws, and raises :class:`TokenSpaceExhausted`; every later
attempt on that lock sees the mark and refuses too, so an ambiguous order is never acted
on. To recover, delete the lock's parent node while nobody holds or waits for it
(``zkCli.sh deleteall /fencing-coord/<ns>/locks/<name>``): tokens continue above every
earlier one, see above. The library itself never deletes a parent.

A parent deleted out of band (its children must be deleted first, so every holder's node
goes too): each holder's node watch fires, and its grant is reported lost with a reason
that names the deleted or recreated parent; a waiter joins the new parent's queue; the
new parent's tokens are larger than the old one's, so the fenced resource refuses the old
holder's late writes once the new holder has written. A backend that sees a lock's parent
with another czxid than before logs a warning.

Leader election is the same queue recipe in the ``elections`` subtree, so a lock and an
election of one name never meet: the first candidate (lowest sequence number, in serial
arithmetic) is the leader, and its term's token is its node's czxid, like a lock grant's,
with every guarantee above (its term is lost, resigned and reported exactly like a grant).
``proclaim(value)`` rewrites the leader's own node (``setData``, unversioned: only its own
session writes it, and the node's nonce makes it a path no other term ever has); the czxid,
and so the token, is unchanged. A node that is gone (session expired, deleted out of band)
makes ``proclaim`` raise :class:`LockLost` and the term is reported lost. ``leader()``
costs two round trips: ``sync`` pipelined with ``getChildren`` (so the answer reflects
every write acknowledged before the call, even through a lagging follower), then ``getData``
of the first candidate. An observer holds a child watch on the election's parent (an
``exists`` watch while the parent does not exist) and a data watch on the leader's node
(so a proclaim is seen). Watches are set again from kazoo's callbacks with asynchronous
requests (never blocking kazoo's threads), and the observer is told to read after they are
set, so no change slips between a read and the next watch; kazoo drops every watch when the
connection drops, so they are all set again, and the observers told, on every reconnection
(a change may have been missed meanwhile).

Session states (one kazoo session per backend object; kazoo reconnects on its own):

* CONNECTED: normal.
* SUSPENDED: the connection is lost; the session may still be alive, and kazoo tries every
  ensemble member in turn. Grants are kept (reconnecting to another member within the
  session timeout keeps the session, the nodes and so the grants), but their holders
  cannot know whether a successor has been granted: a careful holder pauses writes while
  ``backend.suspended`` is True (the fenced resource protects it regardless). If the
  connection stays lost for a whole (negotiated) session timeout, the server has most
  likely expired the session (it does once it has not heard from the client for that
  long), and a successor may hold the lock: every grant is reported lost ("session
  presumed expired"); if the session turns out to have survived (the server itself was
  unreachable or stopped), their nodes are deleted when the connection comes back.
* LOST: the server expired the session (or the client learns so on reconnecting): every
  grant is reported lost ("session expired") and its ``on_lost`` callbacks run once.
  kazoo then opens a new session, which later acquisitions use; waiters queue again on it.

``renew(grant)`` costs one round trip: it checks that the session is alive and the grant's
node still exists (the session itself is kept alive by kazoo's heartbeats); ``LockLost``
otherwise. The node of every grant held for more than 50 ms is watched, so an
out-of-band deletion is reported without a renew, within about 0.1 s (grants given up
sooner never pay for a watch: a request, and an event when they are released). kazoo
runs watch and state callbacks on its own threads; this module never blocks them (work
that needs a round trip goes to one monitor thread per backend).

Errors of kazoo are mapped at this edge: connection loss, session expiry, timeouts ->
:class:`BackendUnavailable` (after waiting up to ``timeout`` seconds for a reconnection);
``NoAuth``/``AuthFailed`` -> :class:`ConfigurationError`; all chained ``from`` the original.
"""

from fencing_coord.spi import ROOT

from .backend import DEFAULT_PORT, ZooKeeperBackend
from .names import DEFAULT_SEQUENCE_WINDOW
from .session import SessionState
from .store import ZooKeeperStore

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SEQUENCE_WINDOW",
    "ROOT",
    "SessionState",
    "ZooKeeperBackend",
    "ZooKeeperStore",
]
