"""Pins the public surface: a change to it is a deliberate, reviewed change."""

from __future__ import annotations

import fencing_coord as fc
import fencing_coord.testing

EXPECTED = {
    "BackendURL",
    "aio",
    "BoundResource",
    "stores",
    "WriteResult",
    "UnfencedResource",
    "Term",
    "ObserverHandle",
    "LeadershipEvent",
    "Leader",
    "FencedResource",
    "Election",
    "BackendUnavailable",
    "Capabilities",
    "ConfigurationError",
    "FencingCoordError",
    "Grant",
    "InvalidArgument",
    "InvalidArgumentType",
    "LockBackend",
    "LockLost",
    "LockState",
    "LockTimeout",
    "NotSupported",
    "StaleTokenError",
    "RowNotFound",
    "TokenSpaceExhausted",
    "__version__",
    "connect",
    "parse_url",
}


def test_all_is_pinned() -> None:
    assert set(fc.__all__) == EXPECTED
    assert len(fc.__all__) == len(set(fc.__all__))


def test_every_exported_name_exists() -> None:
    for name in fc.__all__:
        assert hasattr(fc, name), name
    for name in fencing_coord.testing.__all__:
        assert hasattr(fencing_coord.testing, name), name
    for name in fc.aio.__all__:
        assert hasattr(fc.aio, name), name


def test_errors_derive_from_the_base() -> None:
    for name in fc.__all__:
        obj = getattr(fc, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, fc.FencingCoordError), name
    assert fc.BackendUnavailable.retryable
    assert not fc.StaleTokenError.retryable


def test_core_does_not_import_backend_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys, fencing_coord, fencing_coord.testing, fencing_coord.stores, fencing_coord.aio,"
        " fencing_coord.observability, fencing_coord.metrics;"
        "bad = [m for m in ('etcd3', 'kazoo', 'grpc', 'psycopg', 'prometheus_client', 'opentelemetry')"
        " if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
