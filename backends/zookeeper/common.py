"""What both ZooKeeper front ends (:class:`.backend.ZooKeeperBackend` and
:class:`.aio_backend.AsyncZooKeeperBackend`) share without I/O: their set-up (paths, the
session object, the monitor), the session's information, and where locks and elections
live."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable

from fencing_coord.errors import BackendUnavailable
from fencing_coord.frontend import FrontEnd
from fencing_coord.grant import Grant
from fencing_coord.spi import ROOT, narrow

from .grant import ZooKeeperGrant
from .monitor import Monitor
from .names import DEFAULT_SEQUENCE_WINDOW, segment
from .session import Session, SessionState
from .tls import TLSOptions

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["ReleaseDelete", "ZooKeeperCommon"]

_log = logging.getLogger(__name__)

# Lock names whose paths a backend remembers.
_PATH_CACHE_SIZE: Final = 4096


class ZooKeeperCommon(FrontEnd):
    """Mixin of the ZooKeeper backends (before their template class in the bases)."""

    def _prepare(self, hosts: str, *, chroot: str = "", ttl: float = 10.0, namespace: str = "default",
                 identity: str = "", timeout: float = 5.0, username: str | None = None, password: str | None = None,
                 randomize_hosts: bool = True, sequence_window: int = DEFAULT_SEQUENCE_WINDOW,
                 tls: TLSOptions | None = None) -> None:
        """Everything but connecting: see ZooKeeperBackend."""
        FrontEnd.__init__(self, ttl=ttl, namespace=namespace,
                          identity=identity or f"zk-client-{uuid.uuid4().hex[:8]}")
        self.timeout = timeout
        #: The chroot, applied here rather than by kazoo, so that missing levels of it are
        #: created along with our own znodes (kazoo creates only the last level).
        self.chroot = chroot.rstrip("/")
        self._root = f"{self.chroot}{ROOT}/{segment(namespace)}"
        self._window = sequence_window
        self._lock_paths: dict[str, str] = {}  # lock name -> parent path (escaping is not free)
        auth = (username, password or "") if username is not None else None
        self._session = Session(hosts, session_timeout=ttl, timeout=timeout, auth=auth,
                                randomize_hosts=randomize_hosts, tls=tls)
        self._monitor = Monitor(self._session, owner=self)

    def _started(self) -> None:
        """Once the session is connected: say what timeout the server granted, start
        the monitor."""
        granted = self._session.negotiated_timeout
        if abs(granted - self.ttl) > 0.001:
            _log.warning("ZooKeeper granted a session timeout of %.3f s instead of the requested ttl=%.3f s "
                         "(the server bounds it by minSessionTimeout/maxSessionTimeout); using %.3f s",
                         granted, self.ttl, granted)
        self._monitor.start()

    # -- session information --------------------------------------------------------------

    @property
    def session_state(self) -> SessionState:
        """The session's state now (see :class:`SessionState`)."""
        return self._session.state

    @property
    def suspended(self) -> bool:
        """True while the connection is lost and the session may or may not be alive: a
        careful holder pauses its writes until this is False again."""
        return self._session.suspended

    @property
    def session_timeout(self) -> float:
        """The session timeout the server granted, seconds."""
        return self._session.negotiated_timeout

    @property
    def session_id(self) -> int | None:
        """The current session's id (None while there is none)."""
        return self._session.session_id

    @property
    def kazoo_client(self) -> Any:
        """The underlying ``kazoo.client.KazooClient`` (for tests and diagnostics; using
        kazoo's recipes on this library's paths breaks its guarantees)."""
        return self._session.client

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the session is connected; True if it is within ``timeout`` s."""
        return self._session.wait_connected(timeout)

    # -- paths ----------------------------------------------------------------------------

    def lock_path(self, name: str) -> str:
        """The persistent parent znode of lock ``name``: its full path on the server,
        chroot included (as an operator would name it in ``zkCli.sh``)."""
        path = self._lock_paths.get(name)
        if path is None:
            path = f"{self._root}/locks/{segment(name)}"
            if len(self._lock_paths) < _PATH_CACHE_SIZE:
                self._lock_paths[name] = path
        return path

    def election_path(self, name: str) -> str:
        """The persistent parent znode of election ``name``, chroot included."""
        return f"{self._root}/elections/{segment(name)}"

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Leader observers (both front ends): watches set from kazoo's threads, re-armed
        by the monitor after every reconnection (see :class:`.election.LeaderWatch`)."""
        from .election import LeaderWatch  # observers only: not on the connect + acquire path

        watch = LeaderWatch(self._session.client, self.election_path(name), notify)
        self._monitor.watch_leader(watch)
        return functools.partial(self._monitor.unwatch_leader, watch)

    # -- release: what its answers mean (both front ends send one delete) ------------------

    def _forget(self, grant: Grant) -> None:
        # Known lost: the monitor already dooms a node the session may still own.
        self._monitor.forget(narrow(grant, ZooKeeperGrant))

    def _releasing(self, grant: Grant) -> ReleaseDelete | None:
        """The one delete that releases ``grant``; None when the monitor dropped the grant
        (it is being reported lost): the release is then False, with no request."""
        mine = narrow(grant, ZooKeeperGrant)
        if not self._monitor.forget(mine):
            return None
        return ReleaseDelete(mine, functools.partial(self._session.client.delete_async, mine.entry.path))

    def _release_failed(self, delete: ReleaseDelete, exc: Exception) -> bool:
        """The release ``delete`` failed with ``exc`` (NoNodeError or BackendUnavailable).
        No node, sent once: False (it was gone). No node after it was sent again on a new
        connection: BackendUnavailable, since the first attempt may have deleted it or the
        node may have been lost before, which cannot be told apart. No answer:
        BackendUnavailable (re-raised), the node deleted once connected (or it dies with
        the session)."""
        mine = delete.grant
        if not isinstance(exc, BackendUnavailable):
            if delete.sent > 1:
                raise BackendUnavailable(
                    f"release {mine.name!r}: the connection dropped with the delete of {mine.entry.path} in "
                    "flight, and the node is gone now; whether the lock was still held until then cannot be told"
                ) from None
            return False
        _log.debug("releasing %r: no answer; its node will be deleted once connected (or dies with the "
                   "session)", mine)
        self._monitor.discard(mine.entry.path, mine.entry.owner)
        raise exc


class ReleaseDelete:
    """The start of a release's delete request, counting how often it was sent (a delete
    sent again after a lost connection cannot tell our first attempt from a loss)."""

    __slots__ = ("grant", "sent", "start")

    def __init__(self, grant: ZooKeeperGrant, start: Callable[[], Any]) -> None:
        self.grant = grant
        self.start = start
        self.sent = 0

    def __call__(self) -> Any:
        self.sent += 1
        return self.start()
