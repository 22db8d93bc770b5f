"""A URL's password never appears in an error: not in a message, a repr, a chained
exception, a log record, nor in the CLI's output (issue 12, item 1).

Every row is one error path of parse_url, OptionReader, connect() or a backend's
from_url, reached with a URL that carries a password. The password is marked by
``Zq7``, which no message contains otherwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import traceback
from dataclasses import dataclass

import pytest

import fencing_coord as fc
from fencing_coord import config

MARK = "Zq7"
PASSWORD = f"s3{MARK}%21x"  # as written in the URL; percent-decoded it is "s3Zq7!x"
CREDS = f"bob:{PASSWORD}@"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


CLOSED = _closed_port()


@dataclass(frozen=True)
class Row:
    url: str
    error: type[fc.FencingCoordError] = fc.ConfigurationError


ROWS: dict[str, Row] = {
    # parse_url
    "no scheme": Row(f"{CREDS}h:2379"),
    "bad scheme": Row(f"e tcd://{CREDS}h"),
    "credentials before the scheme": Row(f"{CREDS}etcd://h"),
    "fragment": Row(f"etcd://{CREDS}h#frag"),
    "'#' in the password": Row(f"etcd://bob:s3#{MARK}@h"),
    "'/' in the password": Row(f"etcd://bob:s3/{MARK}@h"),
    "'?' in the password": Row(f"etcd://bob:s3?{MARK}@h"),
    "'?' and digits in the password": Row(f"etcd://bob:12?{MARK}@h"),
    "malformed query": Row(f"etcd://{CREDS}h?ttl"),
    "option given twice": Row(f"etcd://{CREDS}h?ttl=1&ttl=2"),
    "port out of range": Row(f"etcd://{CREDS}h:99999"),
    "port not a number": Row(f"etcd://{CREDS}h:abc"),
    "empty host": Row(f"etcd://{CREDS}:2379"),
    "empty bracketed host": Row(f"etcd://{CREDS}[]:2379"),
    "IPv6 without brackets": Row(f"etcd://{CREDS}::1:2379"),
    "bad IPv6 host": Row(f"etcd://{CREDS}[::1]x"),
    # OptionReader
    "option not a number": Row(f"etcd://{CREDS}h?ttl=abc"),
    "option out of range": Row(f"etcd://{CREDS}h?ttl=0"),
    "unknown option": Row(f"etcd://{CREDS}h?tll=1"),
    "bad namespace": Row(f"etcd://{CREDS}h?namespace=a/b"),
    # connect() and the backends' from_url
    "unknown scheme": Row(f"nope://{CREDS}h"),
    "memory:// with a port": Row(f"memory://{CREDS}a:1"),
    "memory:// with two tables": Row(f"memory://{CREDS}a,b"),
    "etcd:// with a path": Row(f"etcd://{CREDS}h/x"),
    "etcd:// with TLS options": Row(f"etcd://{CREDS}h?cert=/etc/hostname"),
    "etcds:// cert without key": Row(f"etcds://{CREDS}h?cert=/etc/hostname"),
    "zookeeper:// chroot below /zookeeper": Row(f"zookeeper://{CREDS}h/zookeeper"),
    "zookeeper:// bad option": Row(f"zookeeper://{CREDS}h?sequence_window=abc"),
    "etcd unreachable": Row(f"etcd://{CREDS}127.0.0.1:{CLOSED}?timeout=0.5", fc.BackendUnavailable),
    "unencoded '@' in the password, unreachable": Row(
        f"etcd://bob:s3@{MARK}@127.0.0.1:{CLOSED}?timeout=0.5", fc.BackendUnavailable
    ),
    "zookeeper unreachable": Row(f"zookeeper://{CREDS}127.0.0.1:{CLOSED}?timeout=0.5", fc.BackendUnavailable),
}


def _everything_shown(exc: BaseException) -> str:
    """What a user may see of ``exc``: its message, its repr and the whole traceback
    with every chained exception."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def _log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in records)


@pytest.mark.parametrize("row", ROWS.values(), ids=list(ROWS))
def test_no_error_path_shows_the_password(row: Row, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(fc.FencingCoordError) as info:
        fc.connect(row.url).close()
    assert isinstance(info.value, row.error), _everything_shown(info.value)
    assert MARK not in _everything_shown(info.value)
    assert MARK not in _log_text(caplog.records)


def test_a_missing_extra_does_not_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(config._BUILTIN, "broken", ("fencing_coord_no_such_module:Backend", "etcd"))
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect(f"broken://{CREDS}h")
    assert MARK not in _everything_shown(info.value)


def test_parsed_urls_show_no_password() -> None:
    url = fc.parse_url(f"etcd://{CREDS}h:2379?identity=me@there")
    assert url.password == "s3Zq7!x"
    for shown in (repr(url), url.redacted(), str(url.query), url.scrub(f"{url.raw} / {url.password}")):
        assert MARK not in shown
    assert url.redacted() == "etcd://bob:***@h:2379?identity=me@there"


def test_backend_errors_with_the_password_are_scrubbed_by_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend whose message quotes the raw URL still does not leak it through connect()."""

    class Careless(fc.LockBackend):
        @classmethod
        def from_url(cls, url: config.BackendURL, options: dict[str, object]) -> fc.LockBackend:
            try:
                raise OSError(f"cannot log in as {url.username}:{url.password}")
            except OSError as exc:
                raise fc.ConfigurationError(f"{url.raw!r} refused") from exc

    monkeypatch.setattr(config, "_load_backend_class", lambda scheme, url: Careless)
    with pytest.raises(fc.ConfigurationError) as info:
        fc.connect(f"careless://{CREDS}h")
    assert MARK not in _everything_shown(info.value)
    assert "refused" in str(info.value)


@pytest.mark.skipif(shutil.which("fencing-coord", path=os.path.dirname(sys.executable)) is None,
                    reason="the fencing-coord script is not installed next to this interpreter")
def test_the_cli_shows_no_password() -> None:
    """``fencing-coord status --url URL`` for every row, run side by side."""
    script = shutil.which("fencing-coord", path=os.path.dirname(sys.executable))
    assert script is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("FENCING_COORD")}
    running = {
        name: subprocess.Popen([script, "status", "--url", row.url, "some-lock"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, row in ROWS.items()
    }
    failures = []
    for name, process in running.items():
        out, err = process.communicate(timeout=60)
        expected = 2 if ROWS[name].error is fc.ConfigurationError else 69
        if MARK in out + err or process.returncode != expected or "fencing-coord: error:" not in err:
            failures.append(f"{name}: exit {process.returncode}\n{out}{err}")
    assert not failures, "\n".join(failures)
