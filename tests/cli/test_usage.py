"""What a user sees when a call goes wrong (issue 12, items 6 and 7): the usage of the
subcommand that was misused, messages that state the real rule, exit codes on ``run``'s
help, and one line per problem, without the client libraries' log records."""

from __future__ import annotations

import io

import pytest

from fencing_coord import cli, connect
from fencing_coord.servers import free_port

from .helpers import cli as run_cli


def main(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["run", "--url", "memory://x", "--lock", "job", "--bogus", "--", "true"], "usage: fencing-coord run "),
        (["status", "--url", "memory://x", "--bogus"], "usage: fencing-coord status "),
        (["servers", "up", "--bogus"], "usage: fencing-coord servers up "),
        (["demo", "--bogus"], "usage: fencing-coord demo "),
    ],
)
def test_an_unknown_argument_prints_the_subcommands_usage(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = main(*argv)
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert err.startswith(usage), err
    assert "unrecognized arguments: --bogus" in err


@pytest.mark.parametrize("value", ["-1", "0"])
def test_ttl_message_states_that_zero_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = main("run", "--url", "memory://x", "--lock", "job", "--ttl", value, "--", "true")
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert "> 0" in err
    assert ">= 0" not in err


def test_run_usage_line_shows_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main("run", "--help")[0] == cli.EXIT_OK
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert "--namespace" in usage


def test_exit_codes_are_listed_on_runs_help_only(capsys: pytest.CaptureFixture[str]) -> None:
    helps: dict[str, str] = {}
    for argv in (["--help"], ["run", "--help"], ["status", "--help"], ["demo", "--help"],
                 ["servers", "--help"], ["servers", "up", "--help"], ["servers", "down", "--help"]):
        assert main(*argv)[0] == cli.EXIT_OK
        helps[" ".join(argv)] = capsys.readouterr().out
    assert "exit codes:" in helps.pop("run --help")
    for command, text in helps.items():
        assert "exit codes:" not in text, command
        assert "75 " not in text, command


@pytest.mark.etcd
def test_timeout_names_the_holder(etcd_url: str, namespace: str) -> None:
    with connect(etcd_url, namespace=namespace, identity="nightly-on-host-b") as other, other.lock("busy") as grant:
        result = run_cli("run", "--url", etcd_url, "--namespace", namespace, "--lock", "busy",
                         "--timeout", "0", "--", "true")
    assert result.returncode == cli.EXIT_TIMEOUT, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"held by nightly-on-host-b (token {grant.token})" in result.stderr


def test_a_failed_call_prints_one_line_not_the_client_librarys_log() -> None:
    closed = free_port()  # nothing listens there: kazoo logs every attempt
    result = run_cli("status", "--url", f"zookeeper://127.0.0.1:{closed}?timeout=1", "job")
    assert result.returncode == cli.EXIT_UNAVAILABLE, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith("fencing-coord: error: ")


def test_verbose_shows_the_log_records() -> None:
    closed = free_port()
    result = run_cli("--verbose", "status", "--url", f"zookeeper://127.0.0.1:{closed}?timeout=1", "job")
    assert result.returncode == cli.EXIT_UNAVAILABLE, result.stderr
    assert "Connection dropped" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("fencing-coord: error: ")
