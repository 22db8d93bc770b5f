"""``zookeeper://`` and ``zookeepers://`` (TLS) -- locks and leader elections with fencing tokens
on ZooKeeper, through kazoo.

Layout (every path below the URL's chroot)::

    /fencing-coord/<namespace>/locks/<name>/            persistent parent, never deleted by us
    /fencing-coord/<namespace>/locks/<name>/_c_<nonce>-lock-<seq>
                                                        one ephemeral-sequential node per contender;
                                                        data: the contender's identity (UTF-8)
    /fencing-coord/<namespace>/elections/<name>/        persistent parent, never deleted by us
    /fencing-coord/<namespace>/elections/<name>/_c_<nonce>-candidate__lock__<seq>
                                                        one ephemeral-sequential node per candidate;
                                                        data: fencing_coord.spi.encode_candidate
                                                        of its identity and value
    /fencing-coord/<namespace>/resources-v2/<resource>  ZooKeeperStore: the fence of a resource
                                                        (its highest token), persistent
    /fencing-coord/<namespace>/resources-v2/<resource>/<key>
                                                        one persistent node per key: its value
    /fencing-coord/<namespace>/resources/<resource>     the layout before (one node per resource),
                                                        a tombstone once moved (see .store_nodes)

The modules, one idea each:

* :mod:`.names`: path segments, contender names (ours, and kazoo's, Curator's and
  ZooKeeper's recipes', which share our queues), serial-number arithmetic and queue order.
* :mod:`.session`: the kazoo session, its states (:class:`SessionState`) and transitions,
  and ``request()``, where every request is sent, retried and its errors mapped.
* :mod:`.queue`: the fair-queue driver (:class:`~.queue.ZooKeeperQueue`) that
  :func:`fencing_coord.fairqueue.wait_in_line` runs for locks and elections alike, and the
  limits of the sequence counter; :mod:`.behind`: the listing it sends behind its create
  (one round trip to join a queue), and :mod:`.wakes`: requests sent together wake
  kazoo's connection thread once.
* :mod:`.grant`: :class:`ZooKeeperGrant` (the node a grant holds) and why tokens are czxids.
* :mod:`.members`: a queue as onlookers read it (``describe``, ``leader``).
* :mod:`.election`: reading and watching an election's leader.
* :mod:`.monitor`: the thread that reports lost grants, re-arms watches after a
  reconnection and deletes nodes nobody will use.
* :mod:`.tls`: ``zookeepers://`` (its ``ca``/``cert``/``key`` options, kazoo's TLS
  arguments) and the first connection, which reports TLS mistakes as ConfigurationError.
* :mod:`.backend`: :class:`ZooKeeperBackend`, the SPI on top of them.
* :mod:`.store_nodes`, :mod:`.store_requests`, :mod:`.store_steps`: the store's znodes, its
  requests, and its operations as steps without I/O that both front ends carry out.
* :mod:`.store`: :class:`ZooKeeperStore`, fenced resources in znodes.
"""

from fencing_coord.spi import ROOT

from .backend import DEFAULT_PORT, ZooKeeperBackend
from .grant import ZooKeeperGrant
from .names import DEFAULT_SEQUENCE_WINDOW
from .session import SessionState

# The store is imported when first named (PEP 562): connect() and the first grant do
# not need it, nor fencing_coord.stores and the audit trail it brings (issue 13).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .store import ZooKeeperStore

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SEQUENCE_WINDOW",
    "ROOT",
    "SessionState",
    "ZooKeeperBackend",
    "ZooKeeperGrant",
    "ZooKeeperStore",
]


if not TYPE_CHECKING:  # mypy sees the import above

    def __getattr__(name: str) -> object:
        if name == "ZooKeeperStore":
            from . import store

            return getattr(store, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
