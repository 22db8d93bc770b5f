"""Bad arguments, bad URLs, unreachable servers, missing binaries: a one-line message
on stderr and the documented exit code, never a traceback."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from fencing_coord import cli
from fencing_coord.errors import NotSupported
from fencing_coord.servers import free_port

from .helpers import cli as run_cli


def main(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice"),
        (["run", "--url", "memory://x", "--", "true"], "--lock"),
        (["run", "--url", "memory://x", "--lock", "job", "--timeout", "-1", "--", "true"], "finite number >= 0"),
        (["run", "--url", "memory://x", "--lock", "job", "--ttl", "soon", "--", "true"], "not a number of seconds"),
        (["demo", "--ttl", "0"], "more than 0 seconds"),
        (["servers"], "required: ACTION"),
        (["servers", "up", "--etcd", "huge"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_argparse_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = main(*argv)
    assert code == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--url", "not-a-url", "job"], "is not a backend URL"),
        (["status", "--url", "nosuch://127.0.0.1", "job"], "no backend for scheme 'nosuch'"),
        (["status", "--url", "etcd://127.0.0.1:99999", "job"], "is not a number from 1 to 65535"),
        (["status", "--url", "memory://x?colour=red", "job"], "does not take option(s) colour"),
        (["run", "--url", "memory://x", "--lock", "job"], "run needs a command to run"),
        (["run", "--url", "memory://x", "--lock", "bad/name", "--", "true"], "error:"),
        (["demo", "--url", "memory://x"], "cannot be shared between processes"),
        (["servers", "up", "--etcd", "none", "--zookeeper", "none", "--state-dir", "/nonexistent/x"], "nothing"),
    ],
)
def test_bad_urls_and_values_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = main(*argv)
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    assert message in err
    assert err.startswith("fencing-coord: error: ")
    assert "Traceback" not in err


def test_no_url_names_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FENCING_COORD_URL", raising=False)
    code, _ = main("status", "job")
    assert code == cli.EXIT_USAGE
    assert "FENCING_COORD_URL" in capsys.readouterr().err


def test_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FENCING_COORD_URL", "memory://cli-env")
    code, out = main("status", "job")
    assert code == cli.EXIT_OK
    assert out.split() == ["LOCK", "HOLDER", "TOKEN", "WAITERS", "job", "-", "-", "-"]


def test_unreachable_server_exits_69(capsys: pytest.CaptureFixture[str]) -> None:
    closed = free_port()  # nothing listens there
    code, _ = main("status", "--url", f"etcd://127.0.0.1:{closed}?timeout=1", "job")
    err = capsys.readouterr().err
    assert code == cli.EXIT_UNAVAILABLE, err
    assert err.startswith("fencing-coord: error: ")


def test_status_without_names_on_a_backend_that_cannot_list_asks_for_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fencing_coord.backends.memory import MemoryBackend

    def no_listing(self: MemoryBackend) -> list[str]:
        raise NotSupported("MemoryBackend cannot list locks")

    monkeypatch.setattr(MemoryBackend, "locks", no_listing)
    code, _ = main("status", "--url", "memory://cli-nolist")
    assert code == cli.EXIT_USAGE
    assert "name the locks to show: fencing-coord status --url URL NAME" in capsys.readouterr().err


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main("--version")[0] == 0
    assert "fencing-coord 0." in capsys.readouterr().out
    assert main("run", "--help")[0] == 0
    help_text = capsys.readouterr().out
    for code in ("75", "76", "126", "127"):
        assert f"\n  {code} " in help_text, f"exit code {code} undocumented in run --help"


def test_demo_without_servers_says_what_to_install(tmp_path: Path) -> None:
    # An empty PATH: neither etcd nor java can be found (python is run by absolute path).
    result = run_cli("demo", env={"PATH": str(tmp_path)})
    assert result.returncode == cli.EXIT_UNAVAILABLE, result.stderr
    assert "apt-get install etcd-server" in result.stderr
    assert "zookeeper" in result.stderr
    assert "Traceback" not in result.stderr


def test_servers_up_without_binaries_says_what_to_install(tmp_path: Path) -> None:
    result = run_cli("servers", "up", "--state-dir", str(tmp_path / "state"), env={"PATH": str(tmp_path)})
    assert result.returncode == cli.EXIT_UNAVAILABLE, result.stderr
    assert "apt-get install etcd-server" in result.stderr


def test_the_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("fencing-coord") == "fencing_coord.cli:console_main"
    assert os.access(os.path.join(os.path.dirname(sys.executable), "fencing-coord"), os.X_OK)
