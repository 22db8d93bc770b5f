"""``etcd://`` and ``etcds://``: locks on the etcd v3 API, tokens from etcd's revisions.

Lock layout. Every contender for lock ``NAME`` puts its own key
``/fencing-coord/<namespace>/locks/<NAME>/<lease-hex>-<n>`` (value: its identity), bound
to its backend's lease and never re-put. The key with the lowest create revision holds
the lock; every other contender watches only the key just before its own (its
predecessor) and re-checks when that key is deleted. The fencing token of a grant is the
``ModRevision`` of the holder's key, which equals its ``CreateRevision``: etcd's
revision counter is cluster-wide, persisted and only ever grows, so a later grant (whose
key was necessarily created after the earlier holder's key) always has a larger token,
across clients, reconnects, restarts and leader changes.

Round trips. An uncontended ``acquire`` is one transaction (put the key, read the
queue's two newest keys); ``try_acquire`` is one transaction (put only if the queue is
empty); ``release`` is one delete. A waiter costs its enqueue, one watch stream, and a
look at the queue when woken (plus one while setting up its watch if the queue moved).
Key names are reused per lease once deleted, so a long-lived backend does not leave a
trail of deleted keys in etcd's index (deleted keys stay there until etcd compacts:
run etcd with ``--auto-compaction-retention``, as in any production setup).

Election layout. Leader election is the same fair queue under
``/fencing-coord/<namespace>/elections/<NAME>/<lease-hex>-<n>`` (apart from locks, so a
lock and an election of one name never meet): the oldest candidate leads, every other
candidate watches its predecessor only. A candidate key's value is the candidate
record of :func:`fencing_coord.spi.encode_candidate`: the identity's length in decimal
ASCII, ``:``, the identity (UTF-8), then the advertised value as raw bytes:
``11:host:42:abchttp://a:8080`` is identity ``host:42:abc``, value
``http://a:8080``. The term's token is the key's ``CreateRevision``: ``proclaim``
re-puts the key (changing its ``ModRevision``) in a transaction guarded by that
CreateRevision, so a deposed leader can never overwrite a successor's key. Observers
watch the election's prefix and re-read the oldest candidate on every event; a key that
does not hold a candidate record (another program wrote it) is reported as
BackendUnavailable, not misread.

Go's ``concurrency`` package (``etcdctl lock``/``elect``) shares these queues: given
the prefix :meth:`EtcdBackend.lock_prefix` (no trailing ``/``) it puts
``<prefix>/<lease-hex>`` and orders by create revision, as we do (see :mod:`.layout`).

The client library. We speak the etcd v3 gRPC API with the protobuf messages and stubs
of the ``python3-etcd3`` distribution (``etcd3.etcdrpc``), not its high-level client:
that client cannot sort or limit a range inside a transaction, and its watcher fails
with ``NameError`` when its stream ends. Nothing from grpc or etcd3 leaves this package:
their errors are mapped to :mod:`fencing_coord.errors` (chained) in :mod:`.connection`.

The modules, one idea each: :mod:`.wire` (requests, responses, what an error means),
:mod:`.connection` (members, retries, budgets), :mod:`.session` (the lease and its
keepalive thread), :mod:`.queue` (the fair queue's driver and :class:`EtcdGrant`),
:mod:`.election` (candidate records, the leader), :mod:`.watch` (observers' prefix
watch), :mod:`.heldkeys` (the held keys' watch), :mod:`.backend` (:class:`EtcdBackend`:
options and semantics) and :mod:`.store` (:class:`EtcdStore`, :func:`owner_guard`).
:mod:`.grpc_logs`, imported first, keeps gRPC's C core from writing its own log lines to
stderr.
"""

from . import grpc_logs  # noqa: F401  (first: before anything imports grpc)
from .backend import EtcdBackend
from .queue import EtcdGrant
from .store import EtcdStore, owner_guard

__all__ = ["EtcdBackend", "EtcdGrant", "EtcdStore", "owner_guard"]
