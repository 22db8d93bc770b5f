"""Local development servers that outlive the command that started them
(``fencing-coord servers up|down|status``), and the binaries they need.

The servers are the ones of :mod:`fencing_coord.servers.etcd` and
:mod:`fencing_coord.servers.zookeeper`, started on a data directory under the state
directory and then left running: their processes are in their own sessions, so neither
the end of this process nor the terminal's hangup stops them. What ``down`` and
``status`` need is written to ``<state dir>/servers.json``: per service its mode, URL,
directory, and each process's pid and client port.

State directory: ``$FENCING_COORD_STATE_DIR``, else ``$XDG_STATE_HOME/fencing-coord``, else
``~/.local/state/fencing-coord``. A lock file there serialises concurrent commands.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .errors import ConfigurationError, InvalidArgument
from .servers import port_open

__all__ = [
    "INSTALL_COMMAND",
    "STATE_DIR_ENV_VAR",
    "DevServers",
    "MissingSoftware",
    "require_servers",
    "state_dir",
]

STATE_DIR_ENV_VAR = "FENCING_COORD_STATE_DIR"
#: What to run on Debian/Ubuntu when a server binary is missing.
INSTALL_COMMAND = "sudo apt-get install etcd-server etcd-client zookeeper default-jre-headless"

ETCD_MODES = {"single": 1, "cluster": 3}
ZOOKEEPER_MODES = {"standalone": 1, "ensemble": 3}
#: Seconds ``down`` waits after SIGTERM before SIGKILL.
STOP_GRACE = 10.0


class MissingSoftware(ConfigurationError):
    """A server binary (etcd, java) or ZooKeeper's jars are not installed."""


def require_servers(*, etcd: bool = True, zookeeper: bool = True) -> None:
    """Raise :class:`MissingSoftware`, naming the packages to install, unless the
    binaries for the requested servers are present."""
    from .servers.zookeeper import classpath

    problems: list[str] = []
    if etcd and shutil.which("etcd") is None:
        problems.append("etcd is not on PATH")
    if zookeeper:
        if shutil.which("java") is None:
            problems.append("java is not on PATH")
        try:
            classpath()
        except ConfigurationError as exc:
            problems.append(str(exc).split(";")[0])
    if problems:
        raise MissingSoftware(
            f"{'; '.join(problems)}. Install the servers with:\n    {INSTALL_COMMAND}\n"
            "(or run against servers you already have: --url etcd://HOST:2379 --url zookeeper://HOST:2181)"
        )


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The state directory: ``explicit``, else ``$FENCING_COORD_STATE_DIR``, else
    ``$XDG_STATE_HOME/fencing-coord``, else ``~/.local/state/fencing-coord``."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get(STATE_DIR_ENV_VAR):
        return Path(os.environ[STATE_DIR_ENV_VAR]).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg).expanduser().resolve() / "fencing-coord"


def _alive(pid: int, marker: str) -> bool:
    """True if ``pid`` runs (not a zombie) and its command line mentions ``marker`` (so a
    recycled pid is never mistaken for our server)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0] if ")" in stat else "?"
    return state != "Z" and marker in cmdline


class DevServers:
    """The servers of one state directory (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.dir = state_dir(directory)
        self.state_file = self.dir / "servers.json"

    # -- the three actions --------------------------------------------------------------

    def up(self, *, etcd: str = "single", zookeeper: str = "standalone", log: TextIO | None = None) -> dict[str, Any]:
        """Start the requested servers (``etcd``: single|cluster|none, ``zookeeper``:
        standalone|ensemble|none) unless they already run; return :meth:`status`.

        Raises :class:`MissingSoftware` when a binary is missing, :class:`InvalidArgument`
        when other servers already run here (``down`` first), :class:`BackendUnavailable`
        when a server does not come up.
        """
        if etcd not in (*ETCD_MODES, "none") or zookeeper not in (*ZOOKEEPER_MODES, "none"):
            raise InvalidArgument(f"unknown mode: etcd={etcd!r}, zookeeper={zookeeper!r}")
        if etcd == "none" and zookeeper == "none":
            raise InvalidArgument("nothing to start: both --etcd and --zookeeper are 'none'")
        wanted = {name: mode for name, mode in (("etcd", etcd), ("zookeeper", zookeeper)) if mode != "none"}
        require_servers(etcd="etcd" in wanted, zookeeper="zookeeper" in wanted)
        with self._locked():
            current = self._read()
            if current:
                running = self._annotate(current)
                modes = {name: s["mode"] for name, s in running["services"].items()}
                all_up = all(p["running"] for s in running["services"].values() for p in s["processes"])
                if all_up and modes == wanted:
                    if log is not None:
                        log.write(f"already running (state in {self.dir})\n")
                    return running
                if all_up:
                    raise InvalidArgument(
                        f"other servers already run from {self.dir} ({_describe(modes)}); "
                        "stop them first with: fencing-coord servers down"
                    )
                if log is not None:
                    log.write("some servers of the last 'up' are gone; restarting them all\n")
                self._stop(current)
            state: dict[str, Any] = {"services": {}}
            try:
                for name, mode in wanted.items():
                    if log is not None:
                        log.write(f"starting {name} ({mode}) ...\n")
                        log.flush()
                    state["services"][name] = self._start(name, mode)
                    self._write(state)
            except BaseException:
                self._stop(state)
                raise
            return self._annotate(state)

    def down(self) -> list[str]:
        """Stop every server ``up`` started here and delete its data and logs; return the
        names of the services stopped (empty when none ran). Idempotent."""
        with self._locked():
            state = self._read()
            self._stop(state)
            return list(state.get("services", {}))

    def status(self) -> dict[str, Any]:
        """The recorded services, each process marked ``running`` (its pid is alive and is
        our server) and ``answers`` (its client port accepts connections)."""
        return self._annotate(self._read())

    # -- internals ----------------------------------------------------------------------

    def _start(self, name: str, mode: str) -> dict[str, Any]:
        service_dir = self.dir / name
        shutil.rmtree(service_dir, ignore_errors=True)
        processes: list[dict[str, Any]] = []
        if name == "etcd":
            from .servers.etcd import EtcdCluster

            cluster = EtcdCluster(ETCD_MODES[mode], base_dir=service_dir)
            cluster.start()
            url = cluster.url
            for member in cluster.members:
                processes.append({"name": member.name, "pid": member.process.pid, "port": member.client_port})
        else:
            from .servers.zookeeper import ZooKeeperEnsemble

            ensemble = ZooKeeperEnsemble(ZOOKEEPER_MODES[mode], base_dir=service_dir)
            ensemble.start()
            url = ensemble.url
            for zk in ensemble.members:
                processes.append({"name": zk.name, "pid": zk.process.pid, "port": zk.client_port})
        # The server objects are dropped without stop(): the processes run on, in their
        # own sessions, and ``down`` finds them through the pids recorded here.
        return {"mode": mode, "url": url, "dir": str(service_dir), "processes": processes}

    def _stop(self, state: dict[str, Any]) -> None:
        for service in state.get("services", {}).values():
            marker = service["dir"]
            # One member at a time: an etcd leader told to stop hands leadership over
            # first, which stalls for seconds if the other members are stopping too.
            for proc in service["processes"]:
                pid = proc.get("pid")
                if pid and _alive(pid, marker):
                    _terminate(pid, marker)
            shutil.rmtree(service["dir"], ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def _annotate(self, state: dict[str, Any]) -> dict[str, Any]:
        services: dict[str, Any] = {}
        for name, service in state.get("services", {}).items():
            processes = []
            for proc in service["processes"]:
                running = bool(proc.get("pid")) and _alive(proc["pid"], service["dir"])
                answers = running and port_open("127.0.0.1", proc["port"])
                processes.append({**proc, "running": running, "answers": answers})
            services[name] = {**service, "processes": processes}
        return {"state_dir": str(self.dir), "services": services}

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read {self.state_file}: {exc}; delete it to start over") from exc
        if not isinstance(data, dict):
            raise ConfigurationError(f"{self.state_file} is not a servers state file; delete it to start over")
        return data

    def _write(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.dir / "lock", "a")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ConfigurationError(f"cannot use state directory {self.dir}: {exc}") from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _terminate(pid: int, marker: str) -> None:
    """SIGTERM ``pid``; SIGKILL it if it still runs after :data:`STOP_GRACE` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    # Not our child (its parent, ``servers up``, has exited): nothing to wait on, so poll.
    while _alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _describe(modes: dict[str, str]) -> str:
    return ", ".join(f"{name} {mode}" for name, mode in modes.items()) or "nothing"
