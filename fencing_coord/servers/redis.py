"""Local Redis servers from Debian's ``redis-server`` package: one primary, optionally
with replicas.

For tests, benchmarks and ``fencing-coord demo``; nothing here depends on a Redis client
library (readiness and roles are read with ``PING`` and ``INFO`` over a plain socket).

    with RedisServer() as server:               # AOF on, fsync on every write
        backend = fc.connect(server.url)
        server.kill()                           # SIGKILL, as in a crash ...
        server.restart()                        # ... and start again on the same data dir

Every member listens on a loopback port that was free at start, keeps its data in its
own directory under a temporary one (removed by :meth:`RedisServer.stop` unless the
caller gave the directory) and logs to ``<dir>/<name>.log``.

``persistence`` (default True) runs the server with ``appendonly yes`` and
``appendfsync always`` (``appendfsync`` can be relaxed to ``everysec`` or ``no``) and no
RDB snapshots: a restart on the same data directory keeps every acknowledged write. With
``persistence=False`` nothing is written to disk and a restart starts empty, as a
cache-only Redis does. ``replicas`` adds that many members replicating the first one
(``replicaof``), for the WAIT-based durability of the Redis backend.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from ..errors import ConfigurationError
from . import LoopbackMember, ManagedProcess, ServerGroup, free_ports, require_binary, wait_until
from .netns import LOOPBACK, Placement
from .tls import TLSFiles

__all__ = ["INSTALL_HINT", "RedisMember", "RedisServer", "RedisTLS", "command"]

INSTALL_HINT = "apt-get install redis-server (Debian/Ubuntu)"

Fsync = Literal["always", "everysec", "no"]


#: The TLS files a Redis server serves with (the shared test certificates).
RedisTLS = TLSFiles


def _encode(*args: str) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def command(port: int, *args: str, tls: RedisTLS | None = None, timeout: float = 2.0) -> bytes | None:
    """Send one command to the server on 127.0.0.1:``port``; the start of its raw RESP
    answer (``+PONG\\r\\n``, ``-LOADING ...``), or None when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            sock = raw if tls is None else tls.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
            sock.sendall(_encode(*args))
            return sock.recv(65536)
    except OSError:
        return None


@dataclass
class RedisMember(LoopbackMember):
    """One redis-server process: the primary (``m0``) or a replica."""

    name: str
    client_port: int
    data_dir: Path
    process: ManagedProcess
    tls: RedisTLS | None = None
    #: Redis members always run on loopback in this process's network.
    placement: Placement = LOOPBACK

    def serving(self) -> bool:
        """True when the server answers PING with PONG (not while it loads its AOF)."""
        return command(self.client_port, "PING", tls=self.tls) == b"+PONG\r\n"

    def replicas_online(self) -> int:
        """How many replicas report themselves connected to this member (``INFO replication``)."""
        answer = command(self.client_port, "INFO", "replication", tls=self.tls) or b""
        return answer.count(b",state=online,")


class RedisServer(ServerGroup[RedisMember]):
    """A Redis primary on loopback, plus ``replicas`` replicas of it.

    ``start()`` returns once every member answers PING (and every replica is online).
    ``base_dir`` (default: a new temporary directory in ``temp_root`` or the system's,
    deleted by :meth:`stop`; a tmpfs such as /dev/shm makes fsync cheap) holds each
    member's data directory and log. ``extra_args`` are appended to every member's
    command line (``("--maxmemory-policy", "allkeys-lru")``, say).
    """

    group_noun = "a Redis server"
    member_noun = "redis-server"

    def __init__(self, *, persistence: bool = True, appendfsync: Fsync = "always", replicas: int = 0,
                 base_dir: str | Path | None = None, temp_root: str | Path | None = None,
                 extra_args: tuple[str, ...] = (), ready_timeout: float = 30.0, tls: RedisTLS | None = None) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ConfigurationError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        if replicas < 0:
            raise ConfigurationError(f"replicas must be >= 0, not {replicas}")
        super().__init__(1 + replicas, base_dir=base_dir, ready_timeout=ready_timeout,
                         temp_prefix="fencing-coord-redis-", temp_root=temp_root)
        self.persistence = persistence
        self.appendfsync = appendfsync
        self.extra_args = extra_args
        self.tls = tls

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Start every member and wait until all serve (replicas: in sync)."""
        if self._started:
            return self
        binary = require_binary("redis-server", INSTALL_HINT)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(self.size)
        for i, port in enumerate(ports):
            name = f"m{i}"
            data_dir = self.base_dir / name
            data_dir.mkdir(parents=True, exist_ok=True)
            argv = [binary, *self._arguments(port, data_dir)]
            if i > 0:
                argv += ["--replicaof", "127.0.0.1", str(ports[0])]
            argv += self.extra_args
            self.members.append(RedisMember(name, port, data_dir, ManagedProcess(argv, self.base_dir / f"{name}.log"),
                                            self.tls))
        self._started = True
        try:
            for member in self.members:
                member.process.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _arguments(self, port: int, data_dir: Path) -> list[str]:
        args = ["--bind", "127.0.0.1", "--dir", str(data_dir), "--save", "", "--daemonize", "no",
                "--logfile", "", "--loglevel", "warning",
                # A replica syncs at once instead of after the default 5 s wait for others.
                "--repl-diskless-sync-delay", "0"]
        if self.persistence:
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        else:
            args += ["--appendonly", "no"]
        if self.tls is None:
            args += ["--port", str(port)]
        else:
            args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(self.tls.server_cert),
                     "--tls-key-file", str(self.tls.server_key), "--tls-ca-cert-file", str(self.tls.ca),
                     "--tls-auth-clients", "yes" if self.tls.client_cert_auth else "no",
                     "--tls-replication", "yes"]
        return args

    # -- what clients need -----------------------------------------------------------

    @property
    def primary(self) -> RedisMember:
        return self.members[0]

    @property
    def port(self) -> int:
        return self.primary.client_port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` of the primary (``rediss://...?ca=...&cert=...&key=...``
        with TLS)."""
        return self.url_of(self.primary)

    def url_of(self, member: RedisMember, db: int = 0) -> str:
        """The URL of ``member``, database ``db``."""
        path = f"/{db}" if db else ""
        if self.tls is None:
            return f"redis://{member.endpoint}{path}"
        return f"rediss://{member.endpoint}{path}?{self.tls.query()}"

    # -- faults (of the primary unless told otherwise) -----------------------------------

    def kill(self, member: RedisMember | None = None) -> None:
        """SIGKILL ``member`` (default: the primary), as in a crash."""
        super().kill(member or self.primary)

    def pause(self, member: RedisMember | None = None) -> None:
        """SIGSTOP ``member`` (default: the primary): its socket stays open, nothing answers."""
        super().pause(member or self.primary)

    def resume(self, member: RedisMember | None = None) -> None:
        super().resume(member or self.primary)

    def restart(self, member: RedisMember | None = None, *, wait: bool = True) -> None:
        """Stop ``member`` (default: the primary) if running and start it again on its data
        directory (with persistence: every acknowledged write is back; without: empty)."""
        super().restart(member or self.primary, wait=wait)

    def _wait_restarted(self, member: RedisMember) -> None:
        wait_until(member.serving, self.ready_timeout, f"{self.member_noun} {member.name} after restart")

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every member answers PING and the primary sees every replica online."""
        limit = self.ready_timeout if timeout is None else timeout

        def ready() -> bool:
            self._check_running()
            if not all(m.serving() for m in self.members):
                return False
            return self.size == 1 or self.primary.replicas_online() == self.size - 1

        wait_until(ready, limit, f"{self.group_noun} of {self.size} in {self.base_dir}")
