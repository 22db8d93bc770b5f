"""``fencing-coord demo``, the main job: on every backend the paused holder's stale write
corrupts an unfenced resource and is refused by a fenced one."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from fencing_coord import cli
from fencing_coord.demo import CORRUPTED, LATE_VALUE, REFUSED, SUCCESSOR_VALUE, UNEXPECTED, Outcome, print_verdicts
from fencing_coord.servers import port_open

from .helpers import cli as run_cli

VERDICT_ROW = re.compile(
    r"^(etcd|zookeeper|redis)\s+(fenced|unfenced)\s+(\d+)\s+(\d+)\s+(accepted|refused)\s+(.+?)\s+(\w+)$"
)


def verdict_rows(stdout: str) -> dict[tuple[str, str], tuple[int, int, str, str, str]]:
    rows = {}
    for line in stdout.splitlines():
        match = VERDICT_ROW.match(line)
        if match:
            backend, resource, holder, successor, late, final, verdict = match.groups()
            rows[backend, resource] = (int(holder), int(successor), late, final, verdict)
    return rows


def check_demo_output(stdout: str, backends: tuple[str, ...] = ("etcd", "zookeeper")) -> None:
    for backend in backends:
        assert f"{backend}: fenced=refused unfenced=corrupted" in stdout.splitlines(), stdout
    rows = verdict_rows(stdout)
    assert set(rows) == {(b, r) for b in backends for r in ("fenced", "unfenced")}, stdout
    for (_backend, resource), (holder, successor, late, final, verdict) in rows.items():
        assert holder < successor  # the successor's grant has the larger token
        if resource == "fenced":
            assert (late, final, verdict) == ("refused", "successor", "refused")
        else:
            assert (late, final, verdict) == ("accepted", "holder (stale)", "corrupted")
    # Every run's timeline shows the pause and the resumption.
    assert stdout.count("SIGSTOP holder") == stdout.count("SIGCONT holder") == 2 * len(backends)


@pytest.mark.etcd
@pytest.mark.zookeeper
@pytest.mark.slow
@pytest.mark.usefixtures("server_binaries")
def test_demo_starts_its_own_servers_and_shows_fenced_refused_unfenced_corrupted() -> None:
    """The README's first command: no URL, servers from the binaries on PATH."""
    result = run_cli("demo", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    with_redis = shutil.which("redis-server") is not None
    check_demo_output(result.stdout, ("etcd", "zookeeper", "redis") if with_redis else ("etcd", "zookeeper"))
    # The servers it started are gone when it returns.
    ports = re.findall(r"^\s+(?:etcd|zookeeper|redis):\s+\w+://127\.0\.0\.1:(\d+)$", result.stdout, re.MULTILINE)
    assert len(ports) == (3 if with_redis else 2), result.stdout
    assert not any(port_open("127.0.0.1", int(port)) for port in ports)


@pytest.mark.etcd
@pytest.mark.zookeeper
@pytest.mark.slow
def test_demo_against_existing_servers(etcd_url: str, zookeeper_url: str) -> None:
    result = run_cli("demo", "--url", etcd_url, "--url", zookeeper_url, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    check_demo_output(result.stdout)
    assert "starting local servers" not in result.stdout


def test_demo_with_an_unreachable_server_exits_69(tmp_path: Path) -> None:
    from fencing_coord.servers import free_port

    result = run_cli("demo", "--url", f"etcd://127.0.0.1:{free_port()}?timeout=1")
    assert result.returncode == cli.EXIT_UNAVAILABLE, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("fenced", "accepted", "final", "verdict"),
    [
        (False, True, LATE_VALUE, CORRUPTED),
        (True, False, SUCCESSOR_VALUE, REFUSED),
        (True, True, LATE_VALUE, CORRUPTED),  # a fenced resource that let it through
        (False, True, SUCCESSOR_VALUE, UNEXPECTED),
        (True, False, LATE_VALUE, UNEXPECTED),
        (True, None, None, UNEXPECTED),
    ],
)
def test_verdicts(fenced: bool, accepted: bool | None, final: str | None, verdict: str) -> None:
    outcome = Outcome("etcd", "etcd://x", fenced, 7, 9, accepted, None, final)
    assert outcome.verdict == verdict
    assert outcome.expected == (verdict == (REFUSED if fenced else CORRUPTED))


def test_demo_exits_1_when_fencing_does_not_show(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a fenced resource let the stale write through, the demo says so and fails."""
    import fencing_coord.demo as demo

    def broken(urls: list[str], out: io.StringIO, *, ttl: float) -> list[Outcome]:
        outcomes = [Outcome("etcd", urls[0], fenced, 7, 9, True, None, LATE_VALUE) for fenced in (False, True)]
        print_verdicts(outcomes, out)
        return outcomes

    monkeypatch.setattr(demo, "run_demo", broken)
    out = io.StringIO()
    assert cli.main(["demo", "--url", "etcd://127.0.0.1:2379"], out=out) == cli.EXIT_FAILED
    assert "etcd: fenced=corrupted unfenced=corrupted" in out.getvalue()
    assert "UNEXPECTED" in out.getvalue()
