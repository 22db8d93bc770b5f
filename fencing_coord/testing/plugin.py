"""pytest plugin (entry point ``pytest11``): lets a third-party backend run the
conformance suite with one class and one command-line option.

    # test_mine.py
    from fencing_coord.testing import BackendFixtures, LockBackendConformance
    class TestMine(LockBackendConformance, BackendFixtures):
        pass

    $ pytest test_mine.py --fencing-coord-url mine://127.0.0.1:9999

The option (or ``$FENCING_COORD_TEST_URL``) fills ``BackendFixtures.backend_url`` for
classes that do not set it. With neither, and no ``backend_url`` on the class, every
test that needs a client fails with a message naming both (it is never a quiet run of
skips). Nothing here imports a backend library.
"""

from __future__ import annotations

import os

import pytest

from .fixtures import TEST_URL_ENV, FakeClock

__all__ = ["fake_clock", "pytest_addoption", "pytest_configure"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fencing-coord-url",
        default=os.environ.get(TEST_URL_ENV),
        help=f"backend URL for conformance classes that set no backend_url (default: ${TEST_URL_ENV})",
    )


def pytest_configure(config: pytest.Config) -> None:
    from .fixtures import BackendFixtures

    url = config.getoption("--fencing-coord-url", default=None)
    if url:
        BackendFixtures.default_url = url
    config.addinivalue_line("markers", "conformance: a fencing-coord conformance test")


@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`FakeClock` for ``memory://`` backends (``clock=fake_clock``)."""
    return FakeClock()
