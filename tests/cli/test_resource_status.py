"""``fencing-coord status --store URL --resource NAME`` (issue 15): a resource's highest
token and its latest gate decisions, read from a real SQLite file and a real PostgreSQL
server by a separate process; nothing invented where the store records no decisions,
nothing created, no password printed."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from fencing_coord import cli
from fencing_coord.gate import FencedResource
from fencing_coord.servers import free_port
from fencing_coord.stores import PostgresStore, SQLiteStore, Store

from .helpers import cli as run_cli


def main(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def decide(store: Store) -> None:
    """On ``orders``: token 5 admitted (holder w1), 3 refused (w2), then in shadow mode
    4 would be refused (w3); ``other`` gets token 9."""
    resource = FencedResource(store)
    assert resource.write("orders", "total", b"1", token=5, holder="w1").accepted
    assert not resource.write("orders", "total", b"2", token=3, holder="w2").accepted
    resource.set_mode("shadow")
    assert resource.write("orders", "total", b"3", token=4, holder="w3").accepted
    assert resource.write("other", "k", b"x", token=9).accepted


EXPECTED = [  # newest first: (key, token, highest, decision, mode, holder)
    ("total", 4, 5, "would_refuse", "shadow", "w3"),
    ("total", 3, 5, "refused", "enforce", "w2"),
    ("total", 5, None, "admitted", "enforce", "w1"),
]


def shown(decisions: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(d["key"], d["token"], d["highest"], d["decision"], d["mode"], d["holder"]) for d in decisions]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Callable[[bool], str]:
    """Make a SQLite store (audited or not) with :func:`decide`'s decisions; its URL."""
    def make(audit: bool) -> str:
        path = tmp_path / ("audited.db" if audit else "plain.db")
        with SQLiteStore(path, audit=audit) as store:
            decide(store)
        return f"sqlite://{path}"  # an absolute path: sqlite:///tmp/...
    return make


def test_sqlite_json_shows_highest_token_and_decisions_newest_first(sqlite_url: Callable[[bool], str]) -> None:
    url = sqlite_url(True)
    result = run_cli("status", "--store", url, "--resource", "orders", "--resource", "unknown", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["audit_table"] is True
    orders, unknown = report["resources"]
    assert orders["resource"] == "orders"
    assert orders["highest_token"] == 5
    assert shown(orders["decisions"]) == EXPECTED
    assert all(d["at"].startswith("20") and "T" in d["at"] for d in orders["decisions"])
    assert unknown == {"resource": "unknown", "highest_token": None, "decisions": []}


def test_limit_keeps_the_newest_decisions(sqlite_url: Callable[[bool], str]) -> None:
    code, out = main("status", "--store", sqlite_url(True), "--resource", "orders", "--limit", "2", "--json")
    assert code == cli.EXIT_OK
    assert shown(json.loads(out)["resources"][0]["decisions"]) == EXPECTED[:2]


def test_sqlite_table_shows_the_same(sqlite_url: Callable[[bool], str]) -> None:
    code, out = main("status", "--store", sqlite_url(True), "--resource", "orders")
    assert code == cli.EXIT_OK
    lines = out.splitlines()
    assert "resource orders: highest token 5" in lines
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["AT", "KEY"])
    assert [line.split()[1:] for line in lines[header + 1:header + 4]] == [
        ["total", "4", "5", "would_refuse", "shadow", "w3"],
        ["total", "3", "5", "refused", "enforce", "w2"],
        ["total", "5", "-", "admitted", "enforce", "w1"],
    ]


def test_a_store_without_audit_table_shows_the_token_and_says_decisions_are_not_recorded(
    sqlite_url: Callable[[bool], str], tmp_path: Path
) -> None:
    url = sqlite_url(False)
    code, out = main("status", "--store", url, "--resource", "orders", "--json")
    assert code == cli.EXIT_OK
    report = json.loads(out)
    assert report["audit_table"] is False
    assert report["resources"] == [{"resource": "orders", "highest_token": 5, "decisions": None}]
    code, out = main("status", "--store", url, "--resource", "orders")
    assert code == cli.EXIT_OK
    assert "highest token 5" in out
    assert "decisions are not recorded in this store" in out
    # Read-only: reading did not add the audit table (nor anything else).
    with sqlite3.connect(tmp_path / "plain.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"fc_resource", "fc_value"}


def test_a_missing_file_is_an_error_and_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"
    code, out = main("status", "--store", f"sqlite://{missing}", "--resource", "orders")
    assert code == cli.EXIT_USAGE
    assert out == ""
    assert f"SQLite store {missing}: no such file" in capsys.readouterr().err
    assert not missing.exists()


def test_a_database_that_holds_no_store_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    code, _ = main("status", "--store", f"sqlite://{other}", "--resource", "orders")
    assert code == cli.EXIT_USAGE
    assert "holds no fencing-coord store (no fc_resource table)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--store", "sqlite:x.db"], "--store needs --resource NAME"),
        (["--store", "sqlite:x.db", "--resource", "r", "--url", "etcd://127.0.0.1:2379"], "give one or the other"),
        (["--store", "sqlite:x.db", "--resource", "r", "lockname"], "give one or the other"),
        (["--resource", "r"], "they need --store URL"),
        (["--url", "memory://x", "--limit", "3"], "they need --store URL"),
        (["--store", "mysql://u:hunter2@h/db", "--resource", "r"], "'mysql://u:***@h/db' is not a store URL"),
        (["--store", "sqlite://host/x.db", "--resource", "r"], "names no host"),
        (["--store", "sqlite:x.db?mode=rw", "--resource", "r"], "takes no ?options"),
        (["--store", "sqlite:x.db", "--resource", "a/b"], "resource name 'a/b' contains '/'"),
        (["--store", "sqlite:x.db", "--resource", "r", "--limit", "0"], "--limit: '0': must be between 1 and 1000"),
    ],
)
def test_bad_input_is_a_usage_error_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = main("status", *argv)
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    assert out == ""
    assert message in err
    assert "hunter2" not in err


@pytest.mark.postgres
def test_postgres_json_shows_highest_token_and_decisions(postgres_url: str) -> None:
    with PostgresStore(postgres_url, audit=True) as store:
        decide(store)
    result = run_cli("status", "--store", postgres_url, "--resource", "orders", "--resource", "other", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["audit_table"] is True
    orders, other = report["resources"]
    assert orders["highest_token"] == 5
    assert shown(orders["decisions"]) == EXPECTED
    assert other["highest_token"] == 9
    assert shown(other["decisions"]) == [("k", 9, None, "admitted", "shadow", None)]


@pytest.mark.postgres
def test_postgres_without_audit_table(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as store:
        decide(store)
    code, out = main("status", "--store", postgres_url, "--resource", "orders", "--json")
    assert code == cli.EXIT_OK
    assert json.loads(out)["resources"] == [{"resource": "orders", "highest_token": 5, "decisions": None}]


@pytest.mark.postgres
def test_postgres_schema_without_store_is_an_error(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = main("status", "--store", postgres_url, "--resource", "orders")
    assert code == cli.EXIT_USAGE
    assert "holds no fencing-coord store (no fc_resource table)" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["user", "query"])
def test_a_password_is_never_printed(where: str) -> None:
    secret = "s3cr%40t-pw"  # percent-encoded '@': neither form may appear
    port = free_port()  # nothing listens there
    url = (f"postgresql://fc:{secret}@127.0.0.1:{port}/db" if where == "user"
           else f"postgresql://fc@127.0.0.1:{port}/db?password={secret}")
    result = run_cli("status", "--store", url, "--resource", "orders")
    assert result.returncode == cli.EXIT_UNAVAILABLE, result.stderr
    assert "PostgreSQL store postgresql://fc" in result.stderr
    assert "***" in result.stderr
    for text in (result.stdout, result.stderr):
        assert secret not in text
        assert "s3cr@t-pw" not in text
