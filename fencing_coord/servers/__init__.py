"""Local development servers started as plain processes from binaries on PATH.

Used by the test fixtures, ``fencing-coord servers`` and ``fencing-coord demo``. One
module per service (``etcd``, ``zookeeper``, ``postgres``, ``redis``); this module holds what
they share: free ports, a managed child process that can be paused (SIGSTOP), resumed,
killed and restarted on its data directory, and :class:`ServerGroup`, the lifecycle and
faults of a group of such processes on loopback (an etcd cluster, a ZooKeeper ensemble).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Generic, Protocol, Self, TypeVar

from ..errors import BackendUnavailable, ConfigurationError
from .netns import LOOPBACK, Placement

__all__ = [
    "LOOPBACK",
    "LoopbackMember",
    "ManagedProcess",
    "Placement",
    "ServerGroup",
    "free_port",
    "free_ports",
    "port_open",
    "require_binary",
    "wait_until",
]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def require_binary(name: str, install_hint: str) -> str:
    """Return the path of ``name`` on PATH, or raise ConfigurationError with the fix."""
    path = shutil.which(name)
    if path is None:
        raise ConfigurationError(f"{name!r} is not on PATH; install it with: {install_hint}")
    return path


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true; BackendUnavailable after ``timeout`` seconds.

    For waiting on an external process to become ready, where nothing can be awaited.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise BackendUnavailable(f"{what} not ready after {timeout} s")
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class ManagedProcess:
    """A child process with a log file, which can be paused, resumed, killed and restarted."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process (again, after a stop or kill)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )
        finally:
            log.close()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        """SIGSTOP the process: it holds its sockets but answers nothing."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.running():
            assert self.proc is not None
            self._signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if not self.running():
            return
        assert self.proc is not None
        self._signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _signal(self, sig: signal.Signals) -> None:
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)


class LoopbackMember:
    """A mixin for the dataclass of a group's member, which declares these fields: the
    member serves clients on ``client_port`` of its placement's host (127.0.0.1 unless
    it was placed in a network namespace) from ``process``."""

    client_port: int
    process: ManagedProcess
    placement: Placement

    @property
    def host(self) -> str:
        """The address the member binds and advertises."""
        return self.placement.host

    @property
    def endpoint(self) -> str:
        """``<host>:<client port>``, as it appears in a backend URL."""
        return f"{self.placement.host}:{self.client_port}"

    def running(self) -> bool:
        return self.process.running()


class Member(Protocol):
    """What :class:`ServerGroup` needs of a member: a name for messages and its process."""

    @property
    def name(self) -> str: ...

    process: ManagedProcess


MemberT = TypeVar("MemberT", bound=Member)


class ServerGroup(Generic[MemberT]):
    """``size`` server processes on loopback forming one group (``size=1``: one server).

    The lifecycle and the faults every kind of group shares; a subclass starts its
    members (:meth:`start`) and says when a restarted member serves again
    (:meth:`_wait_restarted`). ``base_dir`` (default: a new temporary directory named
    ``<temp_prefix>...`` in ``temp_root`` or the system's temporary directory, deleted by
    :meth:`stop`) holds each member's data and log.
    ``placements`` (default: every member on 127.0.0.1 in this process's network) says
    where each member runs: the address it binds and advertises and the network
    namespace its process is started in (see :mod:`fencing_coord.servers.netns`).
    """

    #: What messages call a group, with its article ("an etcd cluster").
    group_noun: ClassVar[str] = "a server group"
    #: What messages call one member, before its name ("etcd member").
    member_noun: ClassVar[str] = "member"

    def __init__(self, size: int, *, base_dir: str | Path | None, ready_timeout: float, temp_prefix: str,
                 temp_root: str | Path | None = None, placements: Sequence[Placement] | None = None) -> None:
        if size < 1:
            raise ConfigurationError(f"{self.group_noun} needs at least one member, not {size}")
        if placements is not None and len(placements) != size:
            raise ConfigurationError(f"{self.group_noun} of {size} needs {size} placements, not {len(placements)}")
        self.size = size
        #: Where each member runs (its address and network namespace), in member order.
        self.placements: list[Placement] = list(placements) if placements is not None else [LOOPBACK] * size
        self.ready_timeout = ready_timeout
        self._own_dir = base_dir is None
        if base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=temp_prefix, dir=temp_root))
        else:
            self.base_dir = Path(base_dir)
        self.members: list[MemberT] = []
        self._started = False

    def _check_ports(self, ports: Sequence[int] | None, per_member: int) -> list[int]:
        """``ports`` as a list (empty: pick free ones at start); ConfigurationError unless
        there are ``per_member`` valid ports for each member."""
        if ports is None:
            return []
        chosen = list(ports)
        if len(chosen) != per_member * self.size or not all(
            isinstance(p, int) and 0 < p < 65536 for p in chosen
        ):
            raise ConfigurationError(
                f"{self.group_noun} of {self.size} needs {per_member * self.size} ports from 1 to 65535, not {chosen}"
            )
        return chosen

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Start every member; return once the group serves clients."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every member and delete the temporary directory (if this object made it).
        Idempotent."""
        self._stop_members()
        self._cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------

    def kill(self, member: MemberT) -> None:
        """SIGKILL ``member`` (no shutdown, as in a crash)."""
        member.process.kill()

    def pause(self, member: MemberT) -> None:
        """SIGSTOP ``member``: its sockets stay open but it answers nothing."""
        member.process.pause()

    def resume(self, member: MemberT) -> None:
        member.process.resume()

    def restart(self, member: MemberT, *, wait: bool = True) -> None:
        """Stop ``member`` (if running) and start it again on its data directory; with
        ``wait``, return once it serves again (as :meth:`_wait_restarted` defines it)."""
        member.process.stop(grace=5.0)
        member.process.start()
        if wait:
            self._wait_restarted(member)

    # -- for subclasses ----------------------------------------------------------------

    def _wait_restarted(self, member: MemberT) -> None:
        """Return once a member that :meth:`restart` started again serves clients."""
        raise NotImplementedError

    def _find_member(self, predicate: Callable[[MemberT], bool], timeout: float, what: str,
                     among: Sequence[MemberT] | None = None) -> MemberT:
        """The first running member (of ``among``, default all) for which ``predicate``
        holds, waiting up to ``timeout`` s for one; BackendUnavailable naming ``what``
        after that."""
        found: list[MemberT] = []
        candidates = self.members if among is None else among

        def look() -> bool:
            for member in candidates:
                if member.process.running() and predicate(member):
                    found[:] = [member]
                    return True
            return False

        wait_until(look, timeout, what)
        return found[0]

    def _check_running(self) -> None:
        """BackendUnavailable with the tail of its log if a member has exited: a group
        waiting to be ready then fails at once instead of at its timeout."""
        for member in self.members:
            if not member.process.running():
                raise BackendUnavailable(
                    f"{self.member_noun} {member.name} exited; its log ends with:\n{member.process.log_tail()}"
                )

    def _stop_members(self) -> None:
        for member in self.members:
            member.process.stop(grace=5.0)
        self._started = False

    def _cleanup(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
