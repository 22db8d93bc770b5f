"""Local development servers that outlive the command that started them
(``fencing-coord servers up|down|status``), and the binaries they need.

The servers are the ones of :mod:`fencing_coord.servers.etcd` and
:mod:`fencing_coord.servers.zookeeper`, started on a data directory under the state
directory and then left running: their processes are in their own sessions, so neither
the end of this process nor the terminal's hangup stops them. What ``down`` and
``status`` need is written to ``<state dir>/servers.json``: per service its mode, URL,
directory, and each process's pid and client port.

Each service keeps its data in ``<state dir>/<service>/``, with ``layout.json`` (its mode
and every port it listens on) next to it. ``down`` leaves that directory alone, so the
next ``up`` starts the service on the same data and the same ports: URLs stay valid and
fencing tokens go on growing, so that stores written earlier keep accepting the new
holders. ``down --purge`` deletes it.

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

SERVICES = ("etcd", "zookeeper")
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
        standalone|ensemble|none) that do not run yet, next to those that do; return
        :meth:`status`. A service whose data an earlier ``up`` left here starts on that
        data, on the same ports; a service that runs with some of its processes gone is
        restarted that way.

        Raises :class:`MissingSoftware` when a binary is missing, :class:`InvalidArgument`
        when a service runs (or has data here) in another mode (``down``, or
        ``down --purge``, first), :class:`BackendUnavailable` when a server does not come up.
        """
        if etcd not in (*ETCD_MODES, "none") or zookeeper not in (*ZOOKEEPER_MODES, "none"):
            raise InvalidArgument(f"unknown mode: etcd={etcd!r}, zookeeper={zookeeper!r}")
        if etcd == "none" and zookeeper == "none":
            raise InvalidArgument("nothing to start: both --etcd and --zookeeper are 'none'")
        wanted = {name: mode for name, mode in (("etcd", etcd), ("zookeeper", zookeeper)) if mode != "none"}
        require_servers(etcd="etcd" in wanted, zookeeper="zookeeper" in wanted)
        with self._locked():
            state = self._read()
            services: dict[str, Any] = dict(state.get("services", {}))
            running = self._annotate(state)["services"]
            for name, service in running.items():
                alive = any(p["running"] for p in service["processes"])
                if alive and name in wanted and service["mode"] != wanted[name]:
                    raise InvalidArgument(
                        f"{name} already runs from {self.dir} as {service['mode']}, not {wanted[name]}; "
                        "stop it first with: fencing-coord servers down"
                    )
            for name, mode in wanted.items():
                self._check_layout(name, mode)
            to_start = [name for name in wanted if name not in running]
            for name, service in running.items():
                if not all(p["running"] for p in service["processes"]):
                    if log is not None:
                        log.write(f"some {name} processes of the last 'up' are gone; restarting {name}\n")
                    self._stop_service(services.pop(name))
                    to_start.append(name)
            if not to_start and log is not None:
                log.write(f"already running (state in {self.dir})\n")
            started: list[str] = []
            try:
                for name in to_start:
                    mode = wanted.get(name) or running[name]["mode"]
                    if log is not None:
                        again = " on its data" if self._layout_file(name).exists() else ""
                        log.write(f"starting {name} ({mode}){again} ...\n")
                        log.flush()
                    services[name] = self._start(name, mode)
                    started.append(name)
                    self._write({"services": services})
            except BaseException:
                for name in started:
                    self._stop_service(services.pop(name))
                self._write({"services": services})
                raise
            return self._annotate({"services": services})

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop every server ``up`` started here; return the names of the services
        stopped (empty when none ran). Idempotent. Their data stays for the next ``up``
        (same ports, tokens go on growing), unless ``purge``: then every service's data
        and logs here are deleted, running or not."""
        with self._locked():
            state = self._read()
            for service in state.get("services", {}).values():
                self._stop_service(service)
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
            if purge:
                for name in SERVICES:
                    shutil.rmtree(self.dir / name, ignore_errors=True)
            return list(state.get("services", {}))

    def status(self) -> dict[str, Any]:
        """The recorded services, each process marked ``running`` (its pid is alive and is
        our server) and ``answers`` (its client port accepts connections)."""
        return self._annotate(self._read())

    def kept_data(self) -> list[str]:
        """The services whose data is kept here (running or not)."""
        return [name for name in SERVICES if self._layout_file(name).exists()]

    # -- internals ----------------------------------------------------------------------

    def _layout_file(self, name: str) -> Path:
        """Where a service's mode and ports are kept, next to its data."""
        return self.dir / name / "layout.json"

    def _layout(self, name: str) -> dict[str, Any] | None:
        path = self._layout_file(name)
        try:
            layout = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot read {path}: {exc}; delete the data with: fencing-coord servers down --purge"
            ) from exc
        if not (isinstance(layout, dict) and isinstance(layout.get("mode"), str)
                and isinstance(layout.get("ports"), list) and all(isinstance(p, int) for p in layout["ports"])):
            raise ConfigurationError(
                f"{path} is not a layout file; delete the data with: fencing-coord servers down --purge"
            )
        return layout

    def _check_layout(self, name: str, mode: str) -> None:
        """InvalidArgument if the data kept for ``name`` is of another mode."""
        layout = self._layout(name)
        if layout is not None and layout["mode"] != mode:
            raise InvalidArgument(
                f"the {name} data in {self.dir / name} is of a {name} {layout['mode']}, not {mode}; "
                "delete it first with: fencing-coord servers down --purge"
            )

    def _start(self, name: str, mode: str) -> dict[str, Any]:
        """Start service ``name`` in ``mode`` on the data and ports kept for it, if any."""
        service_dir = self.dir / name
        layout = self._layout(name)
        if layout is None:  # no data of ours: whatever is there is left over from a failed start
            shutil.rmtree(service_dir, ignore_errors=True)
        ports = None if layout is None else layout["ports"]
        processes: list[dict[str, Any]] = []
        if name == "etcd":
            from .servers.etcd import EtcdCluster

            cluster = EtcdCluster(ETCD_MODES[mode], base_dir=service_dir, ports=ports)
            cluster.start()
            url = cluster.url
            ports = [p for m in cluster.members for p in (m.client_port, m.peer_port)]
            for member in cluster.members:
                processes.append({"name": member.name, "pid": member.process.pid, "port": member.client_port})
        else:
            from .servers.zookeeper import ZooKeeperEnsemble

            ensemble = ZooKeeperEnsemble(ZOOKEEPER_MODES[mode], base_dir=service_dir, ports=ports, keep_data=True)
            ensemble.start()
            url = ensemble.url
            ports = [p for m in ensemble.members for p in (m.client_port, m.quorum_port, m.election_port)]
            for zk in ensemble.members:
                processes.append({"name": zk.name, "pid": zk.process.pid, "port": zk.client_port})
        # The server objects are dropped without stop(): the processes run on, in their
        # own sessions, and ``down`` finds them through the pids recorded here.
        _write_json(self._layout_file(name), {"mode": mode, "ports": ports})
        return {"mode": mode, "url": url, "dir": str(service_dir), "processes": processes}

    def _stop_service(self, service: dict[str, Any]) -> None:
        marker = service["dir"]
        # One member at a time: an etcd leader told to stop hands leadership over
        # first, which stalls for seconds if the other members are stopping too.
        for proc in service["processes"]:
            pid = proc.get("pid")
            if pid and _alive(pid, marker):
                _terminate(pid, marker)

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
        _write_json(self.state_file, state)

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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` so that a reader never sees half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
