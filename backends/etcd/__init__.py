"""``etcd://`` and ``etcds://``: locks and elections on the etcd v3 API, tokens from
etcd's revisions. See :mod:`.backend` for the key layout and the semantics."""

from .backend import EtcdBackend
from .store import EtcdStore, owner_guard

__all__ = ["EtcdBackend", "EtcdStore", "owner_guard"]
