"""The ZooKeeper backend: :class:`ZooKeeperBackend`, the SPI on top of the session
(:mod:`.session`), the queue driver (:mod:`.queue`), the monitor (:mod:`.monitor`) and
the election readers (:mod:`.election`)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from kazoo.exceptions import NoNodeError

from fencing_coord.errors import BackendUnavailable, ConfigurationError, LockLost
from fencing_coord.fairqueue import wait_in_line
from fencing_coord.grant import Grant
from fencing_coord.interface import Capabilities
from fencing_coord.records import Leader, LockState
from fencing_coord.spi import ElectionBackend, encode_candidate, narrow
from fencing_coord.url import BackendURL, OptionReader
from fencing_coord.validation import INT32_MILLISECONDS

from .common import ZooKeeperCommon
from .grant import ZooKeeperGrant
from .names import CANDIDATE_KIND, DEFAULT_SEQUENCE_WINDOW, LOCK_KIND, segment, unsegment
from .queue import ZooKeeperQueue
from .tls import DEFAULT_TLS_PORT, TLS_SCHEMES, TLSOptions, pem_file, tls_options

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["DEFAULT_PORT", "ZooKeeperBackend"]

_log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 2181


class ZooKeeperBackend(ZooKeeperCommon, ElectionBackend):
    """Locks and leader elections on ZooKeeper::

        zookeeper://[user:password@]host[:port][,host[:port]...][/chroot][?options]
        zookeepers://[user:password@]host[:port][,...][/chroot]?ca=/path/ca.pem[&cert=/path/c.pem&key=/path/k.pem]

    ``zk://`` and ``zks://`` are aliases. ``zookeepers://`` speaks TLS to the servers'
    ``secureClientPort`` (default port 2281): ``ca`` verifies the servers' certificates (the
    system's roots when omitted), which must name the host as the URL writes it; ``cert``
    and ``key`` (together; an unencrypted PEM key) present a client certificate. A TLS
    mistake (an untrusted server certificate, a client certificate refused or missing, a
    plain client on a TLS port or the other way round) is a :class:`ConfigurationError`
    naming TLS, not a timeout (see :mod:`.tls`). Hosts are tried in random order
    (``randomize_hosts``); the port defaults to 2181 (2281 with TLS); IPv6 hosts go in
    brackets. ``/chroot`` (optional) roots every path
    this backend uses at that znode, which is created if missing. ``user:password`` adds
    ZooKeeper digest credentials to the session, and every znode the backend creates then
    gets the ACL ``auth`` (all permissions for that user only); other users, anonymous
    ones included, are refused with :class:`ConfigurationError`.

    ================ ================================================================== ================
    option           meaning                                                            default
    ================ ================================================================== ================
    ttl              session timeout requested, seconds. The server clamps it to its    10
                     ``minSessionTimeout``..``maxSessionTimeout`` (by default 2 and 20
                     times ``tickTime``, i.e. 4..40 s at the default 2 s tick); the
                     granted value is ``session_timeout`` and is the one used for every
                     decision (a warning is logged when it differs from ``ttl``).
    namespace        second path segment, isolating one application                     ``default``
    timeout          seconds to wait for ZooKeeper per call, reconnections included;    5
                     also bounds ``connect``
    identity         holder identity, stored in every lock and candidate node           host:pid:random
    randomize_hosts  try the hosts in random order (``false``: in the order given)      ``true``
    sequence_window  largest distance in sequence numbers tolerated between two live    2^30
                     contenders of one lock or election before it refuses with
                     TokenSpaceExhausted
                     (see :mod:`.queue`; small values are for tests)
    ca               zookeepers: CA bundle (PEM file) that signed the servers' certs    system roots
    cert, key        zookeepers: client certificate and its unencrypted private key     none
                     (PEM files)
    ================ ================================================================== ================

    Tokens are the creation zxids of the lock and candidate nodes (see :mod:`.grant` for
    why, :mod:`.queue` for the limits of the sequence counter, :mod:`.election` for
    elections). Sessions: see :mod:`.session`; ``suspended`` tells a holder (or a leader)
    to pause writes.
    """

    schemes = ("zookeeper", "zk", *TLS_SCHEMES)
    capabilities = Capabilities(fifo=True, injectable_clock=False, multiprocess=True)

    def __init__(self, hosts: str, *, chroot: str = "", ttl: float = 10.0, namespace: str = "default",
                 identity: str = "", timeout: float = 5.0, username: str | None = None, password: str | None = None,
                 randomize_hosts: bool = True, sequence_window: int = DEFAULT_SEQUENCE_WINDOW,
                 tls: TLSOptions | None = None) -> None:
        """Connect to ``hosts`` (``host:port,...``), over TLS with ``tls``; every path is
        put below ``chroot`` (``/a/b`` or empty). Raises :class:`BackendUnavailable` when
        no server accepts a session within ``timeout``, :class:`ConfigurationError` for a
        TLS mistake."""
        self._prepare(hosts, chroot=chroot, ttl=ttl, namespace=namespace, identity=identity, timeout=timeout,
                      username=username, password=password, randomize_hosts=randomize_hosts,
                      sequence_window=sequence_window, tls=tls)
        self._session.start()
        self._started()

    @classmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> ZooKeeperBackend:
        hosts, settings = cls.settings(url, options)
        return cls(hosts, **settings)

    @staticmethod
    def settings(url: BackendURL, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The host list and the keyword arguments a ZooKeeper URL and options mean."""
        reader = OptionReader(url, options)
        common = reader.common(max_ttl=INT32_MILLISECONDS)
        randomize = reader.get("randomize_hosts", True, _parse_bool)
        window = reader.get("sequence_window", DEFAULT_SEQUENCE_WINDOW, _parse_window)
        ca = reader.get("ca", None, pem_file)
        cert = reader.get("cert", None, pem_file)
        key = reader.get("key", None, pem_file)
        reader.finish()
        tls = tls_options(url, ca, cert, key)
        if url.username is not None and url.password is None:
            raise ConfigurationError(f"{url.redacted()}: digest credentials need user:password, not just a user")
        default_port = DEFAULT_PORT if tls is None else DEFAULT_TLS_PORT
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in url.host_list(default_port))
        chroot = url.path.strip("/")
        parts = chroot.split("/") if chroot else []
        if any(p in ("", ".", "..") or segment(p) != p for p in parts) or parts[:1] == ["zookeeper"]:
            raise ConfigurationError(
                f"{url.redacted()}: chroot /{chroot} is not a usable ZooKeeper path (an empty, '.' or '..' "
                "segment, a character ZooKeeper refuses, or below /zookeeper)"
            )
        return hosts, {"chroot": "/" + chroot if chroot else "", "ttl": common.ttl, "namespace": common.namespace,
                       "identity": common.identity, "timeout": common.timeout, "username": url.username,
                       "password": url.password, "randomize_hosts": randomize, "sequence_window": window,
                       "tls": tls}

    # -- the lock SPI -----------------------------------------------------------------------

    def _acquire(self, name: str, deadline: float | None, on_queued: Callable[[], object] | None) -> Grant | None:
        driver = ZooKeeperQueue(self._monitor, LOCK_KIND, self._window, parent=self.lock_path(name), name=name,
                                holder=self.identity, data=self.identity.encode("utf-8"), deadline=deadline)
        return wait_in_line(driver, deadline, on_queued)

    def _renew(self, grant: Grant) -> None:
        """One round trip: the session is alive (kazoo's heartbeats keep it) and the node
        is still ours; LockLost otherwise."""
        mine = narrow(grant, ZooKeeperGrant)
        path = mine.entry.path
        stat = self._session.request(f"renew {mine.name!r}", lambda: self._session.client.exists_async(path))
        if stat is None or int(stat.czxid) != mine.entry.czxid:
            raise LockLost(f"{mine!r} is lost: {self._monitor.lost(mine)}")

    def _release(self, grant: Grant) -> bool:
        """One delete. True when it deleted our node (ephemeral, so our session and the
        lock lived until then); False when the node was already gone; BackendUnavailable
        when ZooKeeper did not answer in time (the node is deleted once connected, or
        dies with the session), or when the delete had to be sent again after a lost
        connection and found the node gone: the first attempt may have deleted it, or
        the node may have been lost before, which cannot be told apart."""
        delete = self._releasing(grant)
        if delete is None:
            return False
        try:
            self._session.request(f"release {delete.grant.name!r}", delete, expected=(NoNodeError,))
        except (NoNodeError, BackendUnavailable) as exc:
            return self._release_failed(delete, exc)
        return True

    def _describe(self, name: str) -> LockState:
        from .members import members  # onlookers only: not on the connect + acquire path

        queued = members(self._session, self.lock_path(name), LOCK_KIND)
        if not queued:
            return LockState(name, None, None)
        holder, *waiters = queued
        return LockState(name, holder.identity, holder.czxid, tuple(m.identity for m in waiters))

    def _names(self) -> list[str]:
        from .kazoo_results import presend  # listing names only: not on the connect + acquire path

        client = self._session.client
        base = f"{self._root}/locks"
        try:
            children = self._session.request("list locks", lambda: client.get_children_async(base),
                                             expected=(NoNodeError,))
        except NoNodeError:
            return []
        epoch = self._session.current_epoch
        stats = [(child, presend(epoch, functools.partial(client.exists_async, f"{base}/{child}")))
                 for child in children]
        names = []
        for child, stat_of in stats:
            stat = self._session.request(f"stat {base}/{child}", stat_of)
            if stat is not None and int(stat.numChildren) > 0:
                names.append(unsegment(child))
        return names

    def _close(self, held: list[Grant]) -> None:
        stop = time.monotonic() + self.timeout  # close is one call: one timeout in all
        self._monitor.stop()
        try:
            # Ending the session deletes every ephemeral node of ours in one step.
            self._session.close(self.timeout)
        finally:
            self._monitor.join(max(0.0, stop - time.monotonic()))

    # -- the election capability (see :mod:`.election`) -------------------------------------

    def _campaign(self, name: str, value: bytes, deadline: float | None,
                  on_queued: Callable[[], object] | None) -> Grant | None:
        driver = ZooKeeperQueue(self._monitor, CANDIDATE_KIND, self._window, parent=self.election_path(name),
                                name=name, holder=self.identity, data=encode_candidate(self.identity, value),
                                deadline=deadline)
        return wait_in_line(driver, deadline, on_queued)

    def _proclaim(self, grant: Grant, value: bytes) -> None:
        """Rewrite the leader's node with ``value`` (its czxid, the token, stays); raise
        :class:`LockLost`, and report the term lost, when the node is gone."""
        mine = narrow(grant, ZooKeeperGrant)
        path = mine.entry.path
        data = encode_candidate(mine.holder, value)
        try:
            # Idempotent: sent again after a reconnection, it writes the same data. On a
            # new session the node died with the old one, and ZooKeeper answers NoNode.
            self._session.request(f"proclaim in {mine.name!r}",
                                  lambda: self._session.client.set_async(path, data), expected=(NoNodeError,))
        except NoNodeError:
            raise LockLost(f"{mine!r} no longer leads: {self._monitor.lost(mine)}") from None

    def _leader(self, name: str) -> Leader | None:
        from .election import read_leader  # onlookers only: not on the connect + acquire path

        return read_leader(self._session, self.election_path(name))


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_window(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an int")
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if not isinstance(number, int):
        raise TypeError(f"expected an int, not {type(value).__name__}")
    if not 2 <= number <= DEFAULT_SEQUENCE_WINDOW:
        raise ValueError(f"must be from 2 to {DEFAULT_SEQUENCE_WINDOW} (2^30), got {number}")
    return number

