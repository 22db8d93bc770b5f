"""The ZooKeeper lock backend.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from kazoo.exceptions import (
    NoNodeError,
)

from fencing_coord.config import BackendURL, OptionReader
from fencing_coord.election import Leader
from fencing_coord.errors import (
    BackendUnavailable,
    ConfigurationError,
    FencingCoordError,
    LockLost,
)
from fencing_coord.interface import Capabilities, Grant, LockBackend, LockState
from fencing_coord.spi import ROOT

from .election import _LeaderWatch
from .names import (
    _CANDIDATE_KIND,
    _KIND_WORDS,
    _LOCK_KIND,
    DEFAULT_SEQUENCE_WINDOW,
    _candidate_data,
    _parse_candidate,
    _segment,
    _unsegment,
)
from .queue import _ContenderQueue, _Entry, _Gone, _Janitor, _Position
from .session import SessionState, _same, _Session

_log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 2181
# A grant's node is watched once the grant has been held this long (seconds).
_ARM_DELAY: Final = 0.05
# Lock names whose paths a backend remembers.
_PATH_CACHE_SIZE: Final = 4096
# Ticks without any grant before the monitor stops ticking.
_IDLE_TICKS: Final = 20




@dataclass
class _Held:
    """Backend-private data of a grant (``Grant.handle``)."""

    entry: _Entry
    parent_czxid: int
    watch: Callable[[Any], None]
    granted_at: float = 0.0
    armed: bool = False  # the node's watch is set


_STOP: Final = object()


class ZooKeeperBackend(LockBackend, _Janitor):
    """Locks and leader elections on ZooKeeper:
    ``zookeeper://[user:password@]host[:port][,host[:port]...][/chroot][?options]``.

    ``zk://`` is an alias. Hosts are tried in random order (``randomize_hosts``); the port
    defaults to 2181; IPv6 hosts go in brackets. ``/chroot`` (optional) roots every path
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
                     (see the module docstring; small values are for tests)
    ================ ================================================================== ================

    Tokens are the creation zxids of the lock and candidate nodes (see the module docstring
    for why, for the limits of the sequence counter and for elections). Sessions: see
    :class:`SessionState` and the module docstring; ``suspended`` tells a holder (or a
    leader) to pause writes.
    """

    schemes = ("zookeeper", "zk")
    capabilities = Capabilities(fifo=True, injectable_clock=False, elections=True, multiprocess=True)

    def __init__(self, hosts: str, *, chroot: str = "", ttl: float = 10.0, namespace: str = "default",
                 identity: str = "", timeout: float = 5.0, username: str | None = None, password: str | None = None,
                 randomize_hosts: bool = True, sequence_window: int = DEFAULT_SEQUENCE_WINDOW) -> None:
        """Connect to ``hosts`` (``host:port,...``); every path is put below ``chroot``
        (``/a/b`` or empty). Raises :class:`BackendUnavailable` when no server accepts a
        session within ``timeout``."""
        super().__init__(ttl=ttl, namespace=namespace, identity=identity or f"zk-client-{uuid.uuid4().hex[:8]}")
        self.timeout = timeout
        #: The chroot, applied here rather than by kazoo, so that missing levels of it are
        #: created along with our own znodes (kazoo creates only the last level).
        self.chroot = chroot.rstrip("/")
        self._root = f"{self.chroot}{ROOT}/{_segment(namespace)}"
        self._mutex = threading.Lock()
        self._live: dict[str, Grant] = {}  # node path -> grant held now
        self._doomed: dict[str, int | None] = {}  # node path -> owning session: delete when connected
        self._orphans: set[tuple[str, str]] = set()  # (parent, nonce) of creates with unknown outcome
        self._parents: dict[str, int] = {}  # queue parent path -> its czxid last seen
        self._lock_paths: dict[str, str] = {}  # lock name -> parent path (escaping is not free)
        # The monitor ticks (every _ARM_DELAY) while grants are live, to arm their watches.
        self._ticking = False
        self._last_grant = 0.0  # time.monotonic() of the last grant
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        auth = (username, password or "") if username is not None else None
        self._session = _Session(hosts, session_timeout=ttl, timeout=timeout, auth=auth,
                                 randomize_hosts=randomize_hosts, listener=self._on_session)
        self._locks = _ContenderQueue(self._session, self, _LOCK_KIND, sequence_window)
        self._candidates = _ContenderQueue(self._session, self, _CANDIDATE_KIND, sequence_window)
        self._leader_watches: set[_LeaderWatch] = set()
        self._monitor = threading.Thread(target=self._run_monitor, name="fencing-coord-zookeeper-monitor",
                                         daemon=True)
        self._session.start()
        granted = self._session.negotiated_timeout
        if abs(granted - ttl) > 0.001:
            _log.warning("ZooKeeper granted a session timeout of %.3f s instead of the requested ttl=%.3f s "
                         "(the server bounds it by minSessionTimeout/maxSessionTimeout); using %.3f s",
                         granted, ttl, granted)
        self._monitor.start()

    @classmethod
    def from_url(cls, url: BackendURL, options: dict[str, Any]) -> ZooKeeperBackend:
        reader = OptionReader(url, options)
        common = reader.common()
        randomize = reader.get("randomize_hosts", True, _parse_bool)
        window = reader.get("sequence_window", DEFAULT_SEQUENCE_WINDOW, _parse_window)
        reader.finish()
        if url.username is not None and url.password is None:
            raise ConfigurationError(f"{url.redacted()}: digest credentials need user:password, not just a user")
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in url.host_list(DEFAULT_PORT))
        chroot = url.path.strip("/")
        parts = chroot.split("/") if chroot else []
        if any(p in ("", ".", "..") or _segment(p) != p for p in parts) or parts[:1] == ["zookeeper"]:
            raise ConfigurationError(
                f"{url.redacted()}: chroot /{chroot} is not a usable ZooKeeper path (an empty, '.' or '..' "
                "segment, a character ZooKeeper refuses, or below /zookeeper)"
            )
        return cls(hosts, chroot="/" + chroot if chroot else "", ttl=common.ttl,
                   namespace=common.namespace, identity=common.identity,
                   timeout=common.timeout, username=url.username, password=url.password,
                   randomize_hosts=randomize, sequence_window=window)

    # -- session information --------------------------------------------------------------

    @property
    def session_state(self) -> SessionState:
        """The session's state now (see :class:`SessionState`)."""
        return self._session.state

    @property
    def suspended(self) -> bool:
        """True while the connection is lost and the session may or may not be alive: a
        careful holder pauses its writes until this is False again."""
        return self._session.state in (SessionState.SUSPENDED, SessionState.LOST, SessionState.CONNECTING)

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
        limit = None if timeout is None else time.monotonic() + timeout
        with self._session.cond:
            while self._session.state != SessionState.CONNECTED and not self._session.closed:
                remaining = None if limit is None else limit - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._session.cond.wait(remaining)
            return self._session.state == SessionState.CONNECTED

    # -- paths ----------------------------------------------------------------------------

    def lock_path(self, name: str) -> str:
        """The persistent parent znode of lock ``name``: its full path on the server,
        chroot included (as an operator would name it in ``zkCli.sh``)."""
        path = self._lock_paths.get(name)
        if path is None:
            path = f"{self._root}/locks/{_segment(name)}"
            if len(self._lock_paths) < _PATH_CACHE_SIZE:
                self._lock_paths[name] = path
        return path

    def election_path(self, name: str) -> str:
        """The persistent parent znode of election ``name``, chroot included."""
        return f"{self._root}/elections/{_segment(name)}"

    # -- SPI --------------------------------------------------------------------------------

    def _acquire(self, name: str, deadline: float | None, on_queued: Callable[[], object] | None) -> Grant | None:
        return self._join(self._locks, self.lock_path(name), name, self.identity.encode("utf-8"), deadline,
                          on_queued)

    def _join(self, recipe: _ContenderQueue, parent: str, name: str, data: bytes, deadline: float | None,
              on_queued: Callable[[], object] | None) -> Grant | None:
        """Queue under ``parent`` with node data ``data`` until first (the grant for
        ``name``) or until ``deadline`` (withdrawn; None). Locks and elections alike."""
        queued = False
        while True:
            entry = recipe.enqueue(parent, data)
            try:
                while True:
                    position = recipe.position(entry, recipe.budget(deadline))
                    if position.predecessor is None:
                        grant = self._register(name, entry, position)
                        if grant is None:
                            raise _Gone("the session changed while acquiring")
                        return grant
                    if deadline is not None and time.monotonic() >= deadline:
                        recipe.withdraw(entry)
                        return None
                    if not queued:
                        queued = True
                        if on_queued is not None:
                            on_queued()
                    recipe.wait(entry, position.predecessor, deadline)
            except _Gone:
                # Our node vanished (session expired, deleted out of band): queue again.
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            except BaseException:
                recipe.withdraw(entry)
                raise

    def _register(self, name: str, entry: _Entry, position: _Position) -> Grant | None:
        held = _Held(entry, position.parent_czxid, watch=lambda _event: None, granted_at=time.monotonic())
        grant = Grant(name, entry.czxid, self.identity, owner=self, handle=held, probe=self._probe)

        def watch(_event: Any) -> None:  # kazoo's thread: hand the check to the monitor
            if not grant.released:
                self._tasks.put(("verify", grant))

        held.watch = watch
        with self._mutex:
            if self._session.session_id != entry.owner:
                self._doomed[entry.path] = entry.owner
                return None
            self._live[entry.path] = grant
            previous = self._parents.get(entry.parent)
            if previous is not None or len(self._parents) < _PATH_CACHE_SIZE:
                self._parents[entry.parent] = position.parent_czxid
            wake = not self._ticking
            self._ticking = True
            self._last_grant = held.granted_at
        if wake:
            self._tasks.put(("tick",))
        if previous is not None and previous != position.parent_czxid:
            _log.warning("the parent znode of %r (%s) was deleted and created again out of band "
                         "(czxid %#x -> %#x); tokens continue upward", name, entry.parent, previous,
                         position.parent_czxid)
        return grant

    def _renew(self, grant: Grant) -> None:
        held = cast(_Held, grant.handle)
        stat = self._session.request(f"renew {grant.name!r}",
                                     lambda: self._session.client.exists_async(held.entry.path))
        if stat is None or int(stat.czxid) != held.entry.czxid:
            reason = self._loss_reason(held)
            self._lose(grant, reason)
            raise LockLost(f"{grant!r} is lost: {reason}")

    def _release(self, grant: Grant) -> bool:
        held = cast(_Held, grant.handle)
        path = held.entry.path
        with self._mutex:
            live = self._live.pop(path, None) is grant
        if not live or grant.lost:
            return False
        attempts = 0

        def delete() -> Any:
            nonlocal attempts
            attempts += 1
            return self._session.client.delete_async(path)

        try:
            self._session.request(f"release {grant.name!r}", delete, expected=(NoNodeError,))
            return True
        except NoNodeError:
            # On a retry, our first delete may have gone through before the connection dropped.
            return attempts > 1 and self._session.session_id == held.entry.owner
        except BackendUnavailable as exc:
            _log.warning("releasing %r: %s; its node will be deleted once connected (or dies with the session)",
                         grant, exc)
            self.discard(path, held.entry.owner)
            return True

    def _describe(self, name: str) -> LockState:
        members = self._locks.members(self.lock_path(name))
        if not members:
            return LockState(name, None, None)
        holder, *waiters = members
        return LockState(name, _identity(holder.data), holder.czxid, tuple(_identity(m.data) for m in waiters))

    def _names(self) -> list[str]:
        client = self._session.client
        base = f"{self._root}/locks"
        try:
            children = self._session.request("list locks", lambda: client.get_children_async(base),
                                             expected=(NoNodeError,))
        except NoNodeError:
            return []
        pending = [(child, client.exists_async(f"{base}/{child}")) for child in children]
        names = []
        for child, result in pending:
            stat = self._session.request(f"stat {base}/{child}", functools.partial(_same, result))
            if stat is not None and int(stat.numChildren) > 0:
                names.append(_unsegment(child))
        return names

    def _close(self, held: list[Grant]) -> None:
        with self._mutex:
            self._live.clear()
            for watch in self._leader_watches:
                watch.stop()
            self._leader_watches.clear()
        self._tasks.put(_STOP)
        try:
            # Ending the session deletes every ephemeral node of ours in one step.
            self._session.close()
        finally:
            self._monitor.join(self.timeout)

    # -- the election SPI (see the module docstring) -----------------------------------------

    def _campaign(self, name: str, value: bytes, deadline: float | None,
                  on_queued: Callable[[], object] | None) -> Grant | None:
        return self._join(self._candidates, self.election_path(name), name, _candidate_data(self.identity, value),
                          deadline, on_queued)

    def _proclaim(self, grant: Grant, value: bytes) -> None:
        """Rewrite the leader's node with ``value`` (its czxid, the token, stays); raise
        :class:`LockLost`, and report the term lost, when the node is gone."""
        held = cast(_Held, grant.handle)
        path = held.entry.path
        data = _candidate_data(grant.holder, value)
        try:
            # Idempotent: sent again after a reconnection, it writes the same data. On a
            # new session the node died with the old one, and ZooKeeper answers NoNode.
            self._session.request(f"proclaim in {grant.name!r}",
                                  lambda: self._session.client.set_async(path, data), expected=(NoNodeError,))
        except NoNodeError:
            reason = self._loss_reason(held)
            self._lose(grant, reason)
            raise LockLost(f"{grant!r} no longer leads: {reason}") from None

    def _leader(self, name: str) -> Leader | None:
        path = self.election_path(name)
        head = self._candidates.head(path)
        if head is None:
            return None
        identity, value = _parse_candidate(f"{path}/{head.contender.node}", head.data)
        return Leader(identity, value, head.czxid)

    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        watch = _LeaderWatch(self._session.client, self.election_path(name), _CANDIDATE_KIND, notify)
        with self._mutex:
            self._leader_watches.add(watch)
        watch.arm()

        def stop() -> None:
            watch.stop()
            with self._mutex:
                self._leader_watches.discard(watch)

        return stop

    # -- janitor ------------------------------------------------------------------------------

    def discard(self, path: str, owner: int | None) -> None:
        with self._mutex:
            self._doomed[path] = owner
        self._tasks.put(("tidy",))

    def sweep(self, parent: str, nonce: str) -> None:
        with self._mutex:
            self._orphans.add((parent, nonce))
        self._tasks.put(("tidy",))

    # -- session events and the monitor thread --------------------------------------------

    def _on_session(self, state: SessionState) -> None:
        # kazoo's connection thread: only bookkeeping, no requests.
        if state in (SessionState.LOST, SessionState.CLOSED):
            with self._mutex:
                lost = list(self._live.values())
                self._live.clear()
                # Ephemeral nodes died with the session.
                self._doomed.clear()
                self._orphans.clear()
            if state == SessionState.LOST:
                for grant in lost:
                    grant.mark_lost("session expired")
        self._tasks.put(("state", state))

    def _run_monitor(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=self._next_wait())
            except queue.Empty:
                task = ("tick",)
            if task is _STOP:
                return
            try:
                if task[0] == "verify":
                    self._verify(task[1])
                elif task[0] == "state" and task[1] == SessionState.CONNECTED:
                    with self._mutex:
                        grants = list(self._live.values())
                        watches = list(self._leader_watches)
                    # Observers first (asynchronous, never blocks): a change may have been
                    # missed while disconnected, and their watches are gone.
                    for watch in watches:
                        watch.arm()
                    # kazoo drops every watch when the connection drops: set them again,
                    # checking that each node survived.
                    for grant in grants:
                        self._verify(grant)
                    self._tidy()
                elif task[0] == "tidy":
                    self._tidy()
                self._presume_lost()
                self._arm_due()
            except FencingCoordError as exc:
                _log.debug("monitor task %r failed: %s", task, exc)
            except Exception:
                _log.exception("monitor task %r failed", task)

    def _next_wait(self) -> float | None:
        """How long the monitor may block: until the live grants must be presumed lost,
        or the next tick while grants are live (None: until a task arrives)."""
        waits = []
        suspended_at = self._session.suspended_at
        if suspended_at is not None and self._live:
            waits.append(max(0.0, suspended_at + self._session.negotiated_timeout - time.monotonic()))
        if self._ticking:
            waits.append(_ARM_DELAY)
        return min(waits) if waits else None

    def _arm_due(self) -> None:
        """Watch the node of every grant held for longer than _ARM_DELAY. Grants given
        up sooner never cost a watch (a request, then an event when they are released);
        an out-of-band deletion of a node is noticed within about 2 x _ARM_DELAY."""
        now = time.monotonic()
        with self._mutex:
            due = [g for g in self._live.values()
                   if not cast(_Held, g.handle).armed and now - cast(_Held, g.handle).granted_at >= _ARM_DELAY]
            if not self._live and now - self._last_grant > _IDLE_TICKS * _ARM_DELAY:
                self._ticking = False  # the next grant wakes the monitor again
        for grant in due:
            self._verify(grant)

    def _verify(self, grant: Grant) -> None:
        """Check that ``grant``'s node exists (re-arming its watch); report it lost if not."""
        held = cast(_Held, grant.handle)
        with self._mutex:
            if self._live.get(held.entry.path) is not grant:
                return
        if self._session.state != SessionState.CONNECTED:
            return  # re-verified when connected again
        stat = self._session.request(f"check {held.entry.path}",
                                     lambda: self._session.client.exists_async(held.entry.path, watch=held.watch))
        held.armed = True
        if stat is None or int(stat.czxid) != held.entry.czxid:
            self._lose(grant, self._loss_reason(held))

    def _lose(self, grant: Grant, reason: str) -> None:
        held = cast(_Held, grant.handle)
        with self._mutex:
            if self._live.get(held.entry.path) is grant:
                del self._live[held.entry.path]
        if grant.mark_lost(reason):
            _log.warning("%r lost: %s", grant, reason)

    def _loss_reason(self, held: _Held) -> str:
        """Say as precisely as can be found out why ``held``'s node is gone."""
        entry = held.entry
        if self._session.session_id != entry.owner:
            return "session expired"
        node, owner = _KIND_WORDS.get(entry.node.split("-", 1)[0], ("node", "queue"))
        gone = f"its {node} {entry.path} was deleted out of band"
        try:
            parent = self._session.request(f"check {entry.parent}",
                                           lambda: self._session.client.exists_async(entry.parent))
        except FencingCoordError:
            return gone
        if parent is None:
            return (f"{gone}, and so was the {owner}'s parent znode {entry.parent} "
                    "(tokens of a new parent continue upward)")
        if int(parent.czxid) != held.parent_czxid:
            return (f"{gone}, and the {owner}'s parent znode {entry.parent} was deleted and created again "
                    "(tokens continue upward)")
        return gone

    def _tidy(self) -> None:
        if self._session.state != SessionState.CONNECTED:
            return
        client = self._session.client
        with self._mutex:
            doomed = dict(self._doomed)
            orphans = set(self._orphans)
        for path, owner in doomed.items():
            if owner is None or owner == self._session.session_id:
                with contextlib.suppress(NoNodeError):
                    self._session.request(f"delete {path}", functools.partial(client.delete_async, path),
                                          expected=(NoNodeError,))
            with self._mutex:
                self._doomed.pop(path, None)
        for parent, nonce in orphans:
            try:
                children = self._session.request(f"list {parent}", functools.partial(client.get_children_async, parent),
                                                 expected=(NoNodeError,))
            except NoNodeError:
                children = []
            for child in children:
                # Any queue's node (``<kind>-<nonce>-<seq>``) created with this nonce.
                if child.split("-", 2)[1:2] == [nonce]:
                    with contextlib.suppress(NoNodeError):
                        self._session.request(f"delete {parent}/{child}",
                                              functools.partial(client.delete_async, f"{parent}/{child}"),
                                              expected=(NoNodeError,))
            with self._mutex:
                self._orphans.discard((parent, nonce))

    def _presume_lost(self) -> None:
        """After a whole session timeout without a connection, the server has expired the
        session (or will before we can reach it): report every grant lost now."""
        suspended_at = self._session.suspended_at
        if suspended_at is None or time.monotonic() < suspended_at + self._session.negotiated_timeout:
            return
        with self._mutex:
            lost = list(self._live.values())
            self._live.clear()
            for grant in lost:
                entry = cast(_Held, grant.handle).entry
                self._doomed[entry.path] = entry.owner
        reason = (f"session presumed expired: no connection to ZooKeeper for the whole session timeout "
                  f"({self._session.negotiated_timeout:g} s)")
        for grant in lost:
            if grant.mark_lost(reason):
                _log.warning("%r lost: %s", grant, reason)

    def _probe(self, grant: Grant) -> None:
        # Reading grant.lost: make the presumption exact even if the monitor is late.
        if self._session.suspended_at is not None:
            self._presume_lost()



def _identity(data: bytes) -> str:
    return data.decode("utf-8", "replace")


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

