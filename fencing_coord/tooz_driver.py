"""A tooz driver on fencing-coord's backends: ``fencing-coord+etcd://``,
``fencing-coord+etcds://``, ``fencing-coord+zookeeper://`` and ``fencing-coord+memory://``
(``pip install 'fencing-coord[tooz]'``; the entry points are in the ``tooz.backends`` group).

The URL after ``fencing-coord+`` is the backend's own URL, with its options
(``fencing-coord+etcd://10.0.0.1:2379?namespace=nova&ttl=10``); options passed to
``tooz.coordination.get_coordinator`` as keywords are added when the URL lacks them. The
backend's identity is the tooz member id.

What maps onto what:

- ``get_lock(name)`` gives a :class:`FencedToozLock`: ``acquire(blocking)`` is
  ``backend.acquire(name, timeout)`` (``blocking=False``: try once; ``True``: the
  ``timeout`` argument, None waiting forever; a number: that many seconds);
  ``release`` releases the grant; ``heartbeat`` renews it; ``lock.token`` is the grant's
  fencing token (None when not held) and ``lock.grant`` the grant itself.
- ``watch_elected_as_leader`` + ``run_watchers`` campaign, without waiting, in the
  election named after the group; a win runs the hooks with ``LeaderElected``.
  ``stand_down_group_leader`` resigns; ``get_leader`` reads the leader (its identity,
  as bytes: the member id); ``leader_term(group)`` gives the term and its token.
- Groups are implicit: ``create_group``/``join_group``/``leave_group`` only record the
  membership locally; listing groups or members is not supported (``tooz.NotImplemented``).

Semantic differences from tooz's other drivers (see the README):

- Not reentrant: a lock held by this coordinator (through any lock object, in any
  thread) is not granted again by it; ``acquire(blocking=False)`` returns False and a
  blocking acquire waits for the release, as across coordinators.
- ``shared=True`` raises ``tooz.NotImplemented`` (no shared locks), and so does
  ``break_()`` (a fenced lock is not broken out of band: the token makes a late holder
  harmless instead).
- ``release()`` may be called from any thread; it returns False when this object does
  not hold the lock, or when the lock had already been lost (expired, taken over).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import tooz
from tooz import coordination, locking

from .config import connect
from .election import Term
from .errors import BackendUnavailable, FencingCoordError, LockLost, LockTimeout
from .grant import Grant
from .interface import LockBackend

__all__ = ["EtcdDriver", "FencedToozLock", "FencingCoordDriver", "MemoryDriver", "ZooKeeperDriver"]

_log = logging.getLogger(__name__)

T = TypeVar("T")


@contextmanager
def _translated() -> Iterator[None]:
    """Our errors as tooz's: BackendUnavailable is a ToozConnectionError, the rest ToozError."""
    try:
        yield
    except BackendUnavailable as exc:
        raise coordination.ToozConnectionError(str(exc)) from exc
    except FencingCoordError as exc:
        raise tooz.ToozError(str(exc)) from exc


def _result(value: T) -> coordination.CoordAsyncResult[T]:
    done: futures.Future[T] = futures.Future()
    done.set_result(value)
    return coordination.CoordinatorResult(done)


def _name(raw: bytes | str) -> str:
    """A tooz lock or group name as one of ours (percent-escaped: no ``/``)."""
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    return urllib.parse.quote(text, safe="")


class FencedToozLock(locking.Lock):
    """A tooz lock on one of our locks; ``token`` is the current grant's fencing token."""

    def __init__(self, name: bytes, driver: FencingCoordDriver) -> None:
        super().__init__(name)
        self._driver = driver
        self._ours = _name(name)
        self._state = threading.Lock()
        self.grant: Grant | None = None

    @property
    def token(self) -> int | None:
        """The fencing token of the grant this object holds, None when it holds none."""
        grant = self.grant
        return None if grant is None else grant.token

    def acquire(self, blocking: bool | float = True, shared: bool = False, timeout: float | None = None) -> bool:
        """True once held; False when not granted within the wait (see the module docstring)."""
        if shared:
            raise tooz.NotImplemented("fencing-coord has no shared locks")
        if blocking is False:
            seconds: float | None = 0.0
        elif blocking is True:
            seconds = timeout
        else:
            seconds = float(blocking)
        deadline = None if seconds is None else time.monotonic() + seconds
        local = self._driver._local_mutex(self._ours)
        if not (local.acquire(blocking=False) if seconds == 0 else
                local.acquire(timeout=-1 if seconds is None else seconds)):
            return False
        try:
            grant = self._backend_acquire(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except BaseException:
            local.release()
            raise
        if grant is None:
            local.release()
            return False
        with self._state:
            self.grant = grant
        return True

    def _backend_acquire(self, seconds: float | None) -> Grant | None:
        backend = self._driver.backend
        with _translated():
            if seconds == 0:
                return backend.try_acquire(self._ours)
            try:
                return backend.acquire(self._ours, timeout=seconds)
            except LockTimeout:
                return None

    def release(self) -> bool:
        """Give the lock up; True if it was still held (see the module docstring)."""
        with self._state:
            grant, self.grant = self.grant, None
        if grant is None:
            return False
        try:
            with _translated():
                return self._driver.backend.release(grant)
        finally:
            self._driver._local_mutex(self._ours).release()

    def heartbeat(self) -> bool:
        """Renew the grant: True while held, False when not held or lost."""
        grant = self.grant
        if grant is None:
            return False
        try:
            with _translated():
                self._driver.backend.renew(grant)
        except LockLost:
            return False
        return True

    def break_(self) -> bool:
        raise tooz.NotImplemented("break_ is not supported: a fenced lock is not broken out of band")

    def is_still_owner(self) -> bool:
        grant = self.grant
        return grant is not None and not grant.lost


class FencingCoordDriver(coordination.CoordinationDriver):
    """The tooz coordinator on one of our backends (one backend object per coordinator)."""

    #: The backend scheme that ``fencing-coord+<scheme>`` stands for.
    scheme: ClassVar[str] = ""
    CHARACTERISTICS: tuple[coordination.Characteristics, ...] = (
        coordination.Characteristics.DISTRIBUTED_ACROSS_THREADS,
        coordination.Characteristics.DISTRIBUTED_ACROSS_PROCESSES,
        coordination.Characteristics.DISTRIBUTED_ACROSS_HOSTS,
        coordination.Characteristics.LINEARIZABLE,
    )

    def __init__(self, member_id: bytes, parsed_url: Any, options: dict[str, Any]) -> None:
        super().__init__(member_id, parsed_url, options)
        scheme = parsed_url.scheme.split("+", 1)[-1] if "+" in parsed_url.scheme else self.scheme
        self._url = urllib.parse.urlunsplit(parsed_url._replace(scheme=scheme))
        in_url = set(urllib.parse.parse_qs(parsed_url.query))
        self._options = {key: values[-1] for key, values in options.items() if key not in in_url}
        self._backend: LockBackend | None = None
        self._mutexes: dict[str, threading.Lock] = {}
        self._mutexes_lock = threading.Lock()
        self._terms: dict[bytes, Term] = {}

    @property
    def backend(self) -> LockBackend:
        """The backend object this coordinator uses (ToozError when not started)."""
        if self._backend is None:
            raise tooz.ToozError("the coordinator is not started")
        return self._backend

    def _local_mutex(self, name: str) -> threading.Lock:
        with self._mutexes_lock:
            return self._mutexes.setdefault(name, threading.Lock())

    def _start(self) -> None:
        identity = self._member_id.decode("utf-8", "surrogateescape")
        with _translated():
            self._backend = connect(self._url, **{"identity": identity, **self._options})

    def _stop(self) -> None:
        backend, self._backend = self._backend, None
        self._terms.clear()
        if backend is not None:
            with _translated():
                backend.close()

    def get_lock(self, name: bytes) -> FencedToozLock:
        return FencedToozLock(name, self)

    def heartbeat(self) -> float:
        """Our backends keep their sessions alive themselves; returns ttl/3, the pace at
        which tooz's Heart may call again."""
        return self.backend.ttl / 3

    # -- groups: implicit -----------------------------------------------------------------

    def create_group(self, group_id: bytes) -> coordination.CoordAsyncResult[None]:
        return _result(None)

    def join_group(self, group_id: bytes, capabilities: Any = b"") -> coordination.CoordAsyncResult[None]:
        self._joined_groups.add(group_id)
        return _result(None)

    def leave_group(self, group_id: bytes) -> coordination.CoordAsyncResult[None]:
        self._joined_groups.discard(group_id)
        self.stand_down_group_leader(group_id)
        return _result(None)

    # -- leader election ------------------------------------------------------------------

    def run_watchers(self, timeout: float | None = None) -> list[Any]:
        """Campaign, without waiting, in every group with an elected-as-leader hook that
        this coordinator does not lead; run the hooks of the groups it has just won."""
        results: list[Any] = []
        for group_id, hooks in list(self._hooks_elected_leader.items()):
            term = self._terms.get(group_id)
            if term is not None and not term.lost:
                continue
            with _translated():
                try:
                    term = self.backend.election(_name(group_id)).campaign(timeout=0)
                except LockTimeout:
                    continue
            self._terms[group_id] = term
            results.extend(hooks.run(coordination.LeaderElected(group_id, self._member_id)))
        return results

    def stand_down_group_leader(self, group_id: bytes) -> bool:
        """Resign the term in ``group_id``; True if this coordinator led it."""
        term = self._terms.pop(group_id, None)
        if term is None:
            return False
        with _translated():
            return term.resign()

    # tooz annotates get_leader as bytes, but its contract (and its test_get_leader) is
    # None while nobody leads.
    def get_leader(self, group_id: bytes) -> coordination.CoordAsyncResult[bytes | None]:  # type: ignore[override]
        with _translated():
            leader = self.backend.election(_name(group_id)).leader()
        return _result(None if leader is None else leader.identity.encode("utf-8", "surrogateescape"))

    def leader_term(self, group_id: bytes) -> Term | None:
        """The term this coordinator holds in ``group_id`` (its ``token`` fences the
        leader's writes), or None."""
        term = self._terms.get(group_id)
        return None if term is None or term.lost else term


class EtcdDriver(FencingCoordDriver):
    """``fencing-coord+etcd://`` (and ``+etcds://``)."""

    scheme = "etcd"


class ZooKeeperDriver(FencingCoordDriver):
    """``fencing-coord+zookeeper://``."""

    scheme = "zookeeper"


class MemoryDriver(FencingCoordDriver):
    """``fencing-coord+memory://<table>``: one process only (tests, examples)."""

    scheme = "memory"
    CHARACTERISTICS = (coordination.Characteristics.DISTRIBUTED_ACROSS_THREADS,)
