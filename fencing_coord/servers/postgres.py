"""A throwaway local PostgreSQL server: ``initdb`` into a temporary directory, start it
on a free port on 127.0.0.1, stop it and delete everything.

    with PostgresServer() as server:
        store = PostgresStore(server.dsn)

Needs the PostgreSQL server binaries (``initdb``, ``postgres``): on PATH, in
``$FENCING_COORD_PG_BIN``, or in ``/usr/lib/postgresql/<version>/bin`` (Debian/Ubuntu:
``apt-get install postgresql``). PostgreSQL refuses to run as root, so when we are root
the server runs as the ``postgres`` system user (created by that package; elsewhere
``useradd --system --no-create-home postgres``), via ``setpriv`` from util-linux, and the
data directory is created under the system temporary directory, owned by that user.
Authentication is ``trust`` on 127.0.0.1 only: a development server, not a deployment.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from ..errors import BackendUnavailable, ConfigurationError
from . import ManagedProcess, free_port, wait_until

__all__ = ["PostgresServer", "find_bin_dir"]

_INSTALL_HINT = "install them (apt-get install postgresql) or set FENCING_COORD_PG_BIN to their directory"

#: Settings for a server whose data is thrown away: durability off, for fast tests.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_bin_dir(preferred: Path | None = None) -> Path:
    """Return the directory holding ``initdb`` and ``postgres`` (``preferred`` if given,
    else the first found as the module docstring says); ConfigurationError if none."""
    if preferred is not None:
        candidates = [preferred]
    else:
        configured = os.environ.get("FENCING_COORD_PG_BIN")
        candidates = [Path(configured)] if configured else []
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).parent)
        candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    where = f" in {preferred}" if preferred is not None else ""
    raise ConfigurationError(f"PostgreSQL server binaries (initdb, postgres) not found{where}; {_INSTALL_HINT}")


def _version(bin_dir: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin, so the newest installed version wins."""
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))


class PostgresServer:
    """One PostgreSQL server in its own temporary data directory.

    ``settings`` are extra ``postgres -c name=value`` options (for example
    :data:`FAST_SETTINGS`). ``run_as`` is the system user to run as when we are root
    (default ``postgres``). :meth:`start` raises :class:`ConfigurationError` when the
    binaries or the user are missing and :class:`BackendUnavailable` when the server
    does not come up within ``timeout`` seconds (its log tail is in the message).
    """

    def __init__(self, *, settings: dict[str, str] | None = None, run_as: str = "postgres",
                 bin_dir: Path | None = None) -> None:
        self.settings = dict(settings or {})
        self.run_as = run_as
        self.bin_dir = bin_dir
        self.port = 0
        self.base_dir: Path | None = None
        self._process: ManagedProcess | None = None

    @property
    def dsn(self) -> str:
        """libpq URL of the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60.0) -> PostgresServer:
        """``initdb`` and start the server; return ``self`` once it accepts connections."""
        bin_dir = find_bin_dir(self.bin_dir)
        prefix = self._privilege_drop()
        self.base_dir = Path(tempfile.mkdtemp(prefix="fencing-coord-pg-"))
        try:
            self._start(bin_dir, prefix, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, bin_dir: Path, prefix: list[str], timeout: float) -> None:
        assert self.base_dir is not None
        data, sockets = self.base_dir / "data", self.base_dir / "sockets"
        sockets.mkdir()
        if prefix:
            user = pwd.getpwnam(self.run_as)
            for path in (self.base_dir, sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        initdb = [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync"]
        done = subprocess.run(initdb, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ConfigurationError(f"initdb failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        self.port = free_port()
        argv = [*prefix, str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
                "-k", str(sockets)]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        self._process = ManagedProcess(argv, self.base_dir / "postgres.log")
        self._process.start()
        try:
            wait_until(self._ready, timeout, f"PostgreSQL on port {self.port}")
        except BackendUnavailable as exc:
            raise BackendUnavailable(f"{exc}; its log ends with:\n{self._process.log_tail()}") from exc

    def stop(self, grace: float = 30.0) -> None:
        """Fast shutdown (SIGINT: disconnect clients, roll back), then delete the data."""
        process, self._process = self._process, None
        if process is not None and process.proc is not None and process.running():
            with contextlib.suppress(ProcessLookupError):
                process.proc.send_signal(signal.SIGINT)
            try:
                process.proc.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _privilege_drop(self) -> list[str]:
        """The command prefix that runs a program as ``run_as`` (nothing unless root)."""
        if os.geteuid() != 0:
            return []
        try:
            user = pwd.getpwnam(self.run_as)
        except KeyError:
            raise ConfigurationError(
                f"PostgreSQL will not run as root and there is no {self.run_as!r} user; create one: "
                f"useradd --system --no-create-home {self.run_as}"
            ) from None
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise ConfigurationError("setpriv runs PostgreSQL as a non-root user: apt-get install util-linux")
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]

    def _ready(self) -> bool:
        assert self._process is not None
        if not self._process.running():
            raise BackendUnavailable(f"PostgreSQL exited during startup:\n{self._process.log_tail()}")
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigurationError("PostgresServer needs psycopg 3: pip install 'fencing-coord[postgres]'") from exc
        try:
            psycopg.connect(self.dsn, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True
