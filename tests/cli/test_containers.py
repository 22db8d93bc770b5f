"""The testcontainers path: the same servers in Docker containers, selected with
``FENCING_COORD_TESTCONTAINERS=1``. Where no Docker engine is reachable (as on the
machine these tests were written on), the tests that need one are skipped with the
reason, and the provider fails with a clear error instead of hanging."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fencing_coord.errors import BackendUnavailable
from fencing_coord.testing import containers

from .helpers import cli

ROOT = Path(__file__).resolve().parents[2]


def test_enabled_reads_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in (("1", True), ("true", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(containers.ENV_VAR, value)
        assert containers.enabled() is expected
    monkeypatch.delenv(containers.ENV_VAR)
    assert containers.enabled() is False


@pytest.mark.etcd
@pytest.mark.zookeeper
@pytest.mark.slow
def test_demo_against_containers() -> None:
    containers.require_docker()
    with containers.etcd_container() as etcd_url, containers.zookeeper_container() as zookeeper_url:
        assert etcd_url.startswith("etcd://")
        assert zookeeper_url.startswith("zookeeper://")
        result = cli("demo", "--url", etcd_url, "--url", zookeeper_url, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "etcd: fenced=refused unfenced=corrupted" in result.stdout
    assert "zookeeper: fenced=refused unfenced=corrupted" in result.stdout


def test_without_docker_the_provider_raises_with_the_reason() -> None:
    reason = containers.docker_unavailable_reason()
    if reason is None:
        pytest.skip("a Docker engine is reachable here")
    assert not containers.docker_available()
    with pytest.raises(BackendUnavailable, match="cannot start containers"), containers.etcd_container():
        pass
    with pytest.raises(BackendUnavailable, match="cannot start containers"), containers.zookeeper_container():
        pass


def test_without_docker_the_suite_skips_with_the_reason(tmp_path: Path) -> None:
    """FENCING_COORD_TESTCONTAINERS=1 on a machine without Docker: server-backed tests are
    skipped, each with the reason, rather than failing or silently using local binaries."""
    if containers.docker_available():
        pytest.skip("a Docker engine is reachable here")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/cli/test_status.py::test_json_shows_holder_token_and_waiters_in_order",
         "tests/cli/test_status.py::test_status_on_zookeeper"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, containers.ENV_VAR: "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 skipped" in result.stdout, result.stdout
    assert "no Docker engine is reachable" in result.stdout or "testcontainers is not installed" in result.stdout
