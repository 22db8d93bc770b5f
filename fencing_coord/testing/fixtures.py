"""The fixtures a backend's conformance tests override (the fsspec pattern).

A backend opts into the suite with one class::

    from fencing_coord.testing import BackendFixtures, LockBackendConformance

    class TestMyBackend(LockBackendConformance, BackendFixtures):
        backend_url = "mine://127.0.0.1:9999"

Override :meth:`BackendFixtures.connect` to build clients another way, and
:meth:`BackendFixtures.expire` to let the suite end a client's lease/session on the
server without sleeping (tests that need it are skipped with a reason otherwise).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from ..config import connect
from ..errors import NotSupported
from ..interface import LockBackend

__all__ = ["BackendFixtures", "FakeClock", "MakeBackend"]

MakeBackend = Callable[..., LockBackend]


class FakeClock:
    """A clock for ``memory://`` (``clock=FakeClock()``) that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        with self._lock:
            self._now += seconds


class BackendFixtures:
    """Provides fresh, independent clients of one backend in a per-test namespace."""

    #: The URL clients connect to; a subclass sets it (on the class, or on the instance
    #: from a fixture when it is known only at run time) or overrides :meth:`connect`.
    #: Tests that start client processes connect them to this URL.
    backend_url: str | None = None
    #: Filled by the pytest plugin from ``--fencing-coord-url``; used when backend_url is None.
    default_url: ClassVar[str | None] = None
    #: Lease/session TTL for the suite's clients, seconds.
    ttl: ClassVar[float] = 5.0

    def connect(self, **options: Any) -> LockBackend:
        """Return a new client (its own session). ``options`` include ``namespace``."""
        url = self.backend_url or self.default_url
        if url is None:
            pytest.skip("no backend URL: set backend_url, override connect() or pass --fencing-coord-url")
        options.setdefault("ttl", self.ttl)
        return connect(url, **options)

    def expire(self, backend: LockBackend) -> None:
        """End ``backend``'s lease/session on the server side now, as if its holder had
        been paused past its TTL. Must not sleep for the TTL."""
        raise NotSupported(f"{type(self).__name__} cannot expire a session on demand")

    @pytest.fixture
    def namespace(self) -> str:
        """A namespace no other test uses, so tests never see each other's locks."""
        return f"t-{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def make_backend(self, namespace: str) -> Iterator[MakeBackend]:
        """``make_backend(**options)``: a new independent client in this test's namespace."""
        made: list[LockBackend] = []

        def make(**options: Any) -> LockBackend:
            options.setdefault("namespace", namespace)
            backend = self.connect(**options)
            made.append(backend)
            return backend

        yield make
        for backend in made:
            backend.close()

    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> LockBackend:
        """The first client."""
        return make_backend()

    @pytest.fixture
    def other(self, make_backend: MakeBackend) -> LockBackend:
        """A second, independent client (its own session)."""
        return make_backend()

    @pytest.fixture
    def expire_session(self) -> Callable[[LockBackend], None]:
        """``expire_session(client)``; the test is skipped when the fixtures cannot."""
        if type(self).expire is BackendFixtures.expire:
            pytest.skip(f"{type(self).__name__} does not override expire(): no session expiry on demand")
        return self.expire
