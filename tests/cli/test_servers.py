"""``fencing-coord servers up|down|status``: development servers that outlive the command,
with their URLs printed, found again by ``status`` and removed by ``down``."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fencing_coord import cli, connect
from fencing_coord.servers import port_open

from .helpers import cli as run_cli

pytestmark = [pytest.mark.etcd, pytest.mark.zookeeper, pytest.mark.usefixtures("server_binaries")]


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state directory whose servers are stopped at the end, whatever the test did."""
    directory = tmp_path / "state"
    yield directory
    run_cli("servers", "down", "--state-dir", str(directory))


def up(state_dir: Path, *args: str) -> dict[str, Any]:
    result = run_cli("servers", "up", "--state-dir", str(state_dir), "--json", *args, timeout=120)
    assert result.returncode == 0, result.stderr
    state: dict[str, Any] = json.loads(result.stdout)
    return state


def pids(state: dict[str, Any]) -> list[int]:
    return [p["pid"] for s in state["services"].values() for p in s["processes"]]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_up_status_down_single_and_standalone(state_dir: Path) -> None:
    state = up(state_dir)
    services = state["services"]
    assert set(services) == {"etcd", "zookeeper"}
    assert services["etcd"]["mode"] == "single"
    assert services["zookeeper"]["mode"] == "standalone"
    # The command has exited; its servers run on and serve locks.
    assert all(alive(pid) for pid in pids(state))
    for service in services.values():
        with connect(service["url"], namespace="servers-test") as backend, backend.lock("probe", timeout=10) as grant:
            assert grant.token > 0

    text = run_cli("servers", "status", "--state-dir", str(state_dir))
    assert text.returncode == 0, text.stderr
    assert f"etcd (single): {services['etcd']['url']}" in text.stdout
    assert f"zookeeper (standalone): {services['zookeeper']['url']}" in text.stdout

    again = run_cli("servers", "up", "--state-dir", str(state_dir))  # idempotent
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert f"export FENCING_COORD_URL={services['etcd']['url']}" in again.stdout

    other = run_cli("servers", "up", "--state-dir", str(state_dir), "--etcd", "cluster")
    assert other.returncode == cli.EXIT_USAGE
    assert "servers down" in other.stderr

    down = run_cli("servers", "down", "--state-dir", str(state_dir), "--purge")
    assert down.returncode == 0
    assert down.stdout.strip() == "stopped: etcd, zookeeper"
    assert not any(alive(pid) for pid in pids(state))
    assert not (state_dir / "etcd").exists()
    assert not (state_dir / "zookeeper").exists()
    gone = run_cli("servers", "status", "--state-dir", str(state_dir))
    assert gone.returncode == 0
    assert "no servers running" in gone.stdout
    assert run_cli("servers", "down", "--state-dir", str(state_dir)).stdout.strip() == "no servers were running"


def tokens(state: dict[str, Any]) -> dict[str, int]:
    """The token of a new grant of lock ``probe`` on each service."""
    granted = {}
    for name, service in state["services"].items():
        with connect(service["url"], namespace="servers-test") as backend, backend.lock("probe", timeout=10) as grant:
            granted[name] = grant.token
    return granted


def test_down_keeps_the_data_so_urls_stay_and_tokens_go_on_growing(state_dir: Path) -> None:
    state = up(state_dir)
    urls = {name: s["url"] for name, s in state["services"].items()}
    before = tokens(state)

    down = run_cli("servers", "down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "stopped: etcd, zookeeper"
    assert "stays in" in down.stderr
    assert not any(alive(pid) for pid in pids(state))
    assert (state_dir / "etcd").exists()
    assert (state_dir / "zookeeper").exists()
    status = run_cli("servers", "status", "--state-dir", str(state_dir))
    assert "no servers running" in status.stdout
    assert "data of etcd, zookeeper kept in" in status.stdout

    again = up(state_dir)
    assert {name: s["url"] for name, s in again["services"].items()} == urls  # same ports
    after = tokens(again)
    for name in ("etcd", "zookeeper"):
        assert after[name] > before[name], f"{name}: token {after[name]} after down/up, {before[name]} before"

    # The data is of a single etcd: a cluster would restart the tokens, so it is refused.
    run_cli("servers", "down", "--state-dir", str(state_dir))
    other = run_cli("servers", "up", "--state-dir", str(state_dir), "--etcd", "cluster", "--zookeeper", "none")
    assert other.returncode == cli.EXIT_USAGE, other.stderr
    assert "servers down --purge" in other.stderr


def test_up_adds_zookeeper_next_to_a_running_etcd(state_dir: Path) -> None:
    first = up(state_dir, "--zookeeper", "none")
    (etcd_pid,) = pids(first)
    both = up(state_dir)
    assert set(both["services"]) == {"etcd", "zookeeper"}
    assert [p["pid"] for p in both["services"]["etcd"]["processes"]] == [etcd_pid]  # left running
    assert both["services"]["etcd"]["url"] == first["services"]["etcd"]["url"]
    assert all(alive(pid) for pid in pids(both))
    assert tokens(both)["zookeeper"] > 0


def test_cluster_and_ensemble(state_dir: Path) -> None:
    state = up(state_dir, "--etcd", "cluster", "--zookeeper", "ensemble")
    for name in ("etcd", "zookeeper"):
        service = state["services"][name]
        assert len(service["processes"]) == 3
        assert all(p["running"] and p["answers"] for p in service["processes"])
        assert service["url"].count(",") == 2  # every member is in the URL
        with connect(service["url"], namespace="servers-test") as backend, backend.lock("probe", timeout=10):
            pass


def test_a_dead_server_shows_in_status_and_up_restarts_it(state_dir: Path) -> None:
    state = up(state_dir, "--zookeeper", "none")
    (etcd_pid,) = pids(state)
    os.kill(etcd_pid, signal.SIGKILL)
    status = run_cli("servers", "status", "--state-dir", str(state_dir))
    assert status.returncode == cli.EXIT_UNAVAILABLE
    assert "NOT RUNNING" in status.stdout
    restarted = up(state_dir, "--zookeeper", "none")
    (new_pid,) = pids(restarted)
    assert new_pid != etcd_pid
    assert alive(new_pid)
    port = restarted["services"]["etcd"]["processes"][0]["port"]
    assert port_open("127.0.0.1", port)


def test_state_dir_from_the_environment(tmp_path: Path) -> None:
    directory = tmp_path / "from-env"
    result = run_cli("servers", "status", "--json", env={"FENCING_COORD_STATE_DIR": str(directory)})
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"state_dir": str(directory.resolve()), "services": {}}
