"""The monitor: one thread per backend that keeps the grants of its session honest.

It reports a grant lost as soon as it can know: its node deleted out of band (a watch on
the node of every grant held for more than 50 ms, so an out-of-band deletion is reported
within about 0.1 s without a renew; grants given up sooner never pay for a watch: a
request, and an event when they are released; a grant made from its predecessor's
deletion event is watched from the start, by the watch its wait set: see :mod:`.handoff`),
its session expired (LOST), or nothing heard from the server for a whole session timeout
(the session is then presumed expired; checked on every read of ``grant.lost`` too, so a
process resumed after a pause sees it at once). It also
deletes nodes of ours that nobody will use (the janitor's work: creates that completed
after their caller gave up, withdrawals that failed, nodes of grants presumed lost while
the session lived on) and sets the watches of grants and leader observers again on every
reconnection, since kazoo drops every watch with the connection.

kazoo runs watch and state callbacks on its own threads; they only hand a named message
(:class:`Verify`, :class:`StateChanged`, :class:`Tidy`) to the monitor's queue, whose
thread makes the round trips.

The thread never ticks: it sleeps until a task, the moment the oldest unwatched grant is
50 ms old, or the moment the live grants must be presumed lost. A grant wakes it only if
it needs an earlier wake-up than the one due: a grant handed over from its predecessor's
deletion (watched from the start) costs the thread nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import queue
import threading
import time
from collections import deque

from kazoo.exceptions import NoNodeError

from fencing_coord.errors import FencingCoordError
from fencing_coord.grant import Grant

from .grant import Entry, ZooKeeperGrant
from .monitor_tasks import StateChanged, Stop, Task, Tick, Tidy, Verify
from .names import kind_words, nonce_of
from .session import Session, SessionState

TYPE_CHECKING = False  # not ``from typing import ...`` at runtime: see fencing_coord.typeless
if TYPE_CHECKING:
    from typing import Final

    from .election import LeaderWatch  # imported by the first leader observer, not by connect()

__all__ = ["Monitor", "StateChanged", "Stop", "Task", "Tick", "Tidy", "Verify"]

_log = logging.getLogger(__name__)

# A grant's node is watched once the grant has been held this long (seconds).
_ARM_DELAY: Final = 0.05
# Queue parents whose czxid a monitor remembers (to notice a parent recreated out of band).
_PARENT_CACHE_SIZE: Final = 4096

_TICK: Final = Tick()
_TIDY: Final = Tidy()


class Monitor:
    """The grants held on one session, the nodes to delete, the leader observers to
    re-arm, and the thread that looks after them (see the module docstring)."""

    def __init__(self, session: Session, owner: object) -> None:
        """Watch over ``session``; grants are issued with ``owner`` (the backend)."""
        self.session = session
        self.owner = owner
        self._mutex = threading.Lock()
        self._live: dict[str, ZooKeeperGrant] = {}  # node path -> grant held now
        self._doomed: dict[str, int | None] = {}  # node path -> owning session: delete when connected
        self._orphans: set[tuple[str, str]] = set()  # (parent, nonce) of creates with unknown outcome
        self._parents: dict[str, int] = {}  # queue parent path -> its czxid last seen
        self._leader_watches: set[LeaderWatch] = set()
        # (when to watch its node, grant) of grants registered without a watch on their
        # node, in that order; the released ones are dropped lazily.
        self._unwatched: deque[tuple[float, ZooKeeperGrant]] = deque()
        # When the sleeping thread wakes by itself (inf: only for a task); -inf while it
        # is awake (it looks at every grant before sleeping again).
        self._wake_at = -math.inf
        # Since the thread last went to sleep: a grant; grants without a watch in quick
        # succession (more are likely: its sleep is kept short enough for them).
        self._granted = self._unwatched_granted = False
        self._last_unwatched = -math.inf  # time.monotonic() of the last grant without a watch
        #: How often the thread was woken for the grants' timing: by a grant that needed
        #: an earlier wake-up, or by its sleep running out (tasks are not counted).
        self.wakeups = 0
        self._tasks: queue.SimpleQueue[Task] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fencing-coord-zookeeper-monitor", daemon=True)
        session.subscribe(self._on_session)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Forget every grant (the session's end deletes their nodes), stop every leader
        watch and end the thread (see :meth:`join`)."""
        with self._mutex:
            self._live.clear()
            self._unwatched.clear()
            for watch in self._leader_watches:
                watch.stop()
            self._leader_watches.clear()
        self._tasks.put(Stop())

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- grants -----------------------------------------------------------------------------

    def register(self, name: str, holder: str, entry: Entry, parent_czxid: int, *,
                 watched: bool = False) -> ZooKeeperGrant | None:
        """The grant of ``name`` for our first node ``entry``; None when the session that
        owns it has already ended (the node is then deleted in the background).
        ``watched``: a watch on the node is set already and will reach the grant (see
        :meth:`.handoff.NodeWatch.hand_to`); else the monitor sets one if the grant is
        still held after 50 ms."""
        grant = ZooKeeperGrant(name, holder, owner=self.owner, probe=self.probe, entry=entry,
                               parent_czxid=parent_czxid, granted_at=time.monotonic(), changed=self._changed)
        grant.armed = watched
        heard_at = self.session.heard_at
        due = math.inf if heard_at is None else heard_at + self.session.negotiated_timeout
        with self._mutex:
            if self.session.session_id != entry.owner:
                self._doomed[entry.path] = entry.owner
                return None
            self._live[entry.path] = grant
            self._granted = True
            previous = self._parents.get(entry.parent)
            if previous is not None or len(self._parents) < _PARENT_CACHE_SIZE:
                self._parents[entry.parent] = parent_czxid
            if not watched:
                self._unwatched_granted |= grant.granted_at - self._last_unwatched < _ARM_DELAY
                self._last_unwatched = grant.granted_at
                self._unwatched.append((grant.granted_at + _ARM_DELAY, grant))
                # Watched 50 to 100 ms after the grant: a thread that wakes by then anyway
                # (grants in quick succession) need not be woken for it.
                due = min(due, grant.granted_at + 2 * _ARM_DELAY)
            wake = due < self._wake_at
            if wake:
                self._wake_at = -math.inf  # one wake-up is enough
                self.wakeups += 1
        if wake:
            self._tasks.put(_TICK)
        if previous is not None and previous != parent_czxid:
            _log.warning("the parent znode of %r (%s) was deleted and created again out of band "
                         "(czxid %#x -> %#x); tokens continue upward", name, entry.parent, previous, parent_czxid)
        return grant

    def forget(self, grant: ZooKeeperGrant) -> bool:
        """Stop looking after ``grant`` (it is being released); True if it was live."""
        with self._mutex:
            return self._live.pop(grant.entry.path, None) is grant

    def lost(self, grant: ZooKeeperGrant) -> str:
        """``grant``'s node is gone: report it lost, and return why."""
        reason = self._loss_reason(grant)
        self._lose(grant, reason)
        return reason

    def probe(self, grant: Grant) -> None:
        """Reading ``grant.lost``: apply the local rule now (a clock check, no request),
        so the first look after a pause of this process already says lost, before kazoo's
        threads or this monitor's have run."""
        self._presume_lost()

    def _changed(self, grant: ZooKeeperGrant) -> None:
        self._tasks.put(Verify(grant))

    # -- leader observers -------------------------------------------------------------------

    def watch_leader(self, watch: LeaderWatch) -> None:
        """Arm ``watch`` now and again after every reconnection, until :meth:`unwatch_leader`."""
        with self._mutex:
            self._leader_watches.add(watch)
        watch.arm()

    def unwatch_leader(self, watch: LeaderWatch) -> None:
        watch.stop()
        with self._mutex:
            self._leader_watches.discard(watch)

    # -- the janitor ------------------------------------------------------------------------

    def discard(self, path: str, owner: int | None) -> None:
        """Delete node ``path`` once connected, if session ``owner`` (None: any) still owns it."""
        with self._mutex:
            self._doomed[path] = owner
        self._tasks.put(_TIDY)

    def sweep(self, parent: str, nonce: str) -> None:
        """Delete every node of ours under ``parent`` named with ``nonce`` once connected
        (a create whose outcome is unknown)."""
        with self._mutex:
            self._orphans.add((parent, nonce))
        self._tasks.put(_TIDY)

    # -- the thread -------------------------------------------------------------------------

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
        self._tasks.put(StateChanged(state))

    def _run(self) -> None:
        while True:
            slept = False
            try:
                task = self._tasks.get(timeout=self._sleep())
            except queue.Empty:
                task, slept = _TICK, True
            with self._mutex:
                self._wake_at = -math.inf
                self.wakeups += slept
            if isinstance(task, Stop):
                return
            try:
                self._handle(task)
                self._presume_lost()
                self._arm_due()
            except FencingCoordError as exc:
                _log.debug("monitor task %r failed: %s", task, exc)
            except Exception:
                _log.exception("monitor task %r failed", task)

    def _handle(self, task: Task) -> None:
        match task:
            case Verify(grant):
                self._verify(grant)
            case StateChanged(SessionState.CONNECTED):
                self._reconnected()
            case Tidy():
                self._tidy()

    def _reconnected(self) -> None:
        with self._mutex:
            grants = list(self._live.values())
            watches = list(self._leader_watches)
        # Observers first (asynchronous, never blocks): a change may have been missed
        # while disconnected, and their watches are gone.
        for watch in watches:
            watch.arm()
        # kazoo drops every watch when the connection drops: set them again, checking
        # that each node survived.
        for grant in grants:
            self._verify(grant)
        self._tidy()

    def _sleep(self) -> float | None:
        """How long the thread may block (None: until a task): until the oldest unwatched
        live grant is _ARM_DELAY old, or the live grants (or a grant's since the last
        sleep) must be presumed lost; at most 2 x _ARM_DELAY after grants without a watch
        in quick succession. Noted in ``_wake_at``: :meth:`register` wakes it only if
        that is too late."""
        heard_at = self.session.heard_at
        with self._mutex:
            self._drop_watched()
            wake_at = math.inf
            if heard_at is not None and (self._live or self._granted):
                wake_at = heard_at + self.session.negotiated_timeout
            if self._unwatched:
                wake_at = min(wake_at, self._unwatched[0][0])
            elif self._unwatched_granted:  # within 100 ms: the next such grant needs no wake-up
                wake_at = min(wake_at, time.monotonic() + 2 * _ARM_DELAY)
            self._granted = self._unwatched_granted = False
            self._wake_at = wake_at
        return None if wake_at == math.inf else max(0.0, wake_at - time.monotonic())

    def _drop_watched(self) -> None:
        """Drop the unwatched grants in front that are watched or gone (mutex held)."""
        pending = self._unwatched
        while pending and (pending[0][1].armed or self._live.get(pending[0][1].entry.path) is not pending[0][1]):
            pending.popleft()

    def _arm_due(self) -> None:
        """Watch the node of every grant held for _ARM_DELAY or longer. Grants given up
        sooner never cost a watch (a request, then an event when they are released); an
        out-of-band deletion of a node is noticed within about 2 x _ARM_DELAY. A watch
        that could not be set is tried again _ARM_DELAY later."""
        now = time.monotonic()
        with self._mutex:
            self._drop_watched()
            due = []
            while self._unwatched and self._unwatched[0][0] <= now:
                due.append(self._unwatched.popleft()[1])
                self._drop_watched()
        for grant in due:
            try:
                self._verify(grant)
            except FencingCoordError as exc:
                _log.debug("could not watch the node of %r: %s", grant, exc)
                with self._mutex:
                    self._unwatched.append((time.monotonic() + _ARM_DELAY, grant))

    def _verify(self, grant: ZooKeeperGrant) -> None:
        """Check that ``grant``'s node exists (re-arming its watch); report it lost if not."""
        path = grant.entry.path
        with self._mutex:
            if self._live.get(path) is not grant:
                return
        if self.session.state != SessionState.CONNECTED:
            return  # verified again when connected again
        stat = self.session.request(f"check {path}", lambda: self.session.client.exists_async(path, watch=grant.watch))
        grant.armed = True
        if stat is None or int(stat.czxid) != grant.entry.czxid:
            self.lost(grant)

    def _lose(self, grant: ZooKeeperGrant, reason: str) -> None:
        with self._mutex:
            if self._live.get(grant.entry.path) is grant:
                del self._live[grant.entry.path]
        if grant.mark_lost(reason):
            _log.warning("%r lost: %s", grant, reason)

    def _loss_reason(self, grant: ZooKeeperGrant) -> str:
        """Say as precisely as can be found out why ``grant``'s node is gone."""
        entry = grant.entry
        if self.session.session_id != entry.owner:
            return "session expired"
        node, owner = kind_words(entry.node)
        gone = f"its {node} {entry.path} was deleted out of band"
        try:
            parent = self.session.request(f"check {entry.parent}",
                                          lambda: self.session.client.exists_async(entry.parent))
        except FencingCoordError:
            return gone
        if parent is None:
            return (f"{gone}, and so was the {owner}'s parent znode {entry.parent} "
                    "(tokens of a new parent continue upward)")
        if int(parent.czxid) != grant.parent_czxid:
            return (f"{gone}, and the {owner}'s parent znode {entry.parent} was deleted and created again "
                    "(tokens continue upward)")
        return gone

    def _tidy(self) -> None:
        if self.session.state != SessionState.CONNECTED:
            return
        with self._mutex:
            doomed = dict(self._doomed)
            orphans = set(self._orphans)
        for path, owner in doomed.items():
            if owner is None or owner == self.session.session_id:
                self._delete(path)
            with self._mutex:
                self._doomed.pop(path, None)
        for parent, nonce in orphans:
            try:
                children = self.session.request(
                    f"list {parent}", functools.partial(self.session.client.get_children_async, parent),
                    expected=(NoNodeError,))
            except NoNodeError:
                children = []
            for child in children:
                if nonce_of(child) == nonce:  # any queue's node created with this nonce
                    self._delete(f"{parent}/{child}")
            with self._mutex:
                self._orphans.discard((parent, nonce))

    def _delete(self, path: str) -> None:
        with contextlib.suppress(NoNodeError):
            self.session.request(f"delete {path}", functools.partial(self.session.client.delete_async, path),
                                 expected=(NoNodeError,))

    def _presume_lost(self) -> None:
        """The local rule (etcd's too): when the server has not heard from us for a whole
        session timeout, it has expired the session (or will before we can reach it),
        and a successor may hold our locks: report every grant lost now. Whether the
        connection looks up or not does not matter (this process may just have been
        paused). Nodes the session may still own are deleted as soon as it can."""
        heard_at = self.session.heard_at
        if heard_at is None or time.monotonic() < heard_at + self.session.negotiated_timeout:
            return
        with self._mutex:
            lost = list(self._live.values())
            self._live.clear()
            for grant in lost:
                self._doomed[grant.entry.path] = grant.entry.owner
        if not lost:
            return
        self._tasks.put(_TIDY)  # the session may have lived on: give the nodes up
        reason = (f"session presumed expired: nothing heard from ZooKeeper for the whole session timeout "
                  f"({self.session.negotiated_timeout:g} s)")
        for grant in lost:
            if grant.mark_lost(reason):
                _log.warning("%r lost: %s", grant, reason)
