"""The fixtures a backend's conformance tests override (the fsspec pattern).

A backend opts into the suite with one class::

    from fencing_coord.testing import BackendFixtures, LockBackendConformance

    class TestMyBackend(LockBackendConformance, BackendFixtures):
        backend_url = "mine://127.0.0.1:9999"

Override :meth:`BackendFixtures.connect` to build clients another way, and
:meth:`BackendFixtures.expire` to let the suite end a client's lease/session on the
server without sleeping (tests that need it are skipped with a reason otherwise, also
when ``expire`` is left with an empty body such as ``...`` or raises NotSupported or
NotImplementedError).

A class with no URL from anywhere (``backend_url``, ``--fencing-coord-url``,
``$FENCING_COORD_TEST_URL``) and no ``connect`` override fails every test that needs a
client, naming those three: a suite that tested nothing must not pass.
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

__all__ = ["TEST_URL_ENV", "BackendFixtures", "FakeClock", "MakeBackend"]

MakeBackend = Callable[..., LockBackend]

#: The environment variable the pytest plugin reads when ``--fencing-coord-url`` is absent.
TEST_URL_ENV = "FENCING_COORD_TEST_URL"


def _template(self: object, backend: LockBackend) -> None: ...


def _does_nothing(fn: Callable[..., object]) -> bool:
    """True for a function whose body is only ``...``, ``pass`` or a docstring: the same
    bytecode as ``_template`` (compiled by this interpreter, so the same on every version)."""
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_code == _template.__code__.co_code


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
            pytest.fail(
                f"{type(self).__name__} has no backend URL: pass --fencing-coord-url URL or set "
                f"${TEST_URL_ENV}, or set backend_url on the class, or override connect()",
                pytrace=False,
            )
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
        name = type(self).__name__
        if type(self).expire is BackendFixtures.expire:
            pytest.skip(f"{name} does not override expire(): no session expiry on demand")
        if _does_nothing(type(self).expire):
            # The README's template, pasted as is: calling it would leave the session
            # alive and the test waiting for a loss that never comes.
            pytest.skip(f"{name}.expire() has an empty body: write it to end the session on the server, or delete it")

        def expire(backend: LockBackend) -> None:
            try:
                self.expire(backend)
            except (NotSupported, NotImplementedError) as exc:
                pytest.skip(f"{name}.expire() cannot end a session: {str(exc) or type(exc).__name__}")

        return expire
