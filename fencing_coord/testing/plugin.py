"""pytest plugin (entry point ``pytest11``): lets a third-party backend run the
conformance suite with one class and one command-line option.

    # test_mine.py
    from fencing_coord.testing import BackendFixtures, LockBackendConformance
    class TestMine(LockBackendConformance, BackendFixtures):
        pass

    $ pytest test_mine.py --fencing-coord-url mine://127.0.0.1:9999

The option (or ``$FENCING_COORD_TEST_URL``) fills ``BackendFixtures.backend_url`` for
classes that do not set it. Nothing here imports a backend library.
"""

from __future__ import annotations

import os

import pytest

from .fixtures import FakeClock

__all__ = ["fake_clock", "pytest_addoption", "pytest_configure"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fencing-coord-url",
        default=os.environ.get("FENCING_COORD_TEST_URL"),
        help="backend URL for conformance classes that set no backend_url",
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
