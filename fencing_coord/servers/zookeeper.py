"""Local ZooKeeper servers from Debian's ``zookeeper`` package: one standalone server or
a small ensemble.

For tests, benchmarks and ``fencing-coord servers up``; nothing here depends on pytest or
on a ZooKeeper client library (readiness and roles are read with ZooKeeper's own
four-letter words, ``srvr`` and ``cons``, over a plain socket).

    with ZooKeeperEnsemble(size=3) as ensemble:   # or ZooKeeperServer() for one server
        backend = fc.connect(ensemble.url)
        ensemble.kill(ensemble.leader())          # SIGKILL the leader ...
        ensemble.restart(ensemble.members[0])     # ... and start a member again on its data dir

Each server runs as ``java -cp <classpath> org.apache.zookeeper.server.quorum.QuorumPeerMain
<zoo.cfg>``. The classpath defaults to Debian's ``/usr/share/java/zookeeper.jar`` (whose
manifest pulls in ZooKeeper's own dependencies: jute, netty, slf4j-api, ...) plus
``slf4j-simple.jar`` for logging; ``$FENCING_COORD_ZOOKEEPER_CLASSPATH`` overrides it.

Every member listens on loopback ports that were free at start (client, quorum and
leader-election ports), keeps its data in a temporary directory with its ``myid``
(removed by :meth:`ZooKeeperEnsemble.stop` unless the caller gave the directory), logs to
``<dir>/zk<id>.log``, has the admin server off and answers every four-letter word.

``force_sync`` (default off) makes every member fsync its transaction log per write, as
production servers do; these throwaway servers skip it for speed (a killed server process
loses nothing, its writes are in the OS's page cache; only a machine crash would).

``tick_ms`` defaults to 200 ms so that short session timeouts are allowed: the server
accepts session timeouts from ``min_session_ms`` (default 2 ticks) to ``max_session_ms``
(default 60 s) and clamps requests outside that range.

With ``tls`` (:class:`~fencing_coord.servers.tls.TLSFiles`, e.g. from
:func:`~fencing_coord.servers.tls.make_certificates`) every member also serves clients
over TLS on a ``secureClientPort`` (Netty, PEM key and trust stores; client certificates
required unless ``tls.client_cert_auth`` is off), and :attr:`ZooKeeperEnsemble.url` is a
``zookeepers://`` URL of those ports naming the CA and the client certificate. The plain
client port stays open on loopback for the readiness checks (four-letter words) and for
out-of-band clients.

    with ZooKeeperServer(tls=make_certificates(tmp)) as server:
        backend = fc.connect(server.url)          # zookeepers://127.0.0.1:<port>?ca=...
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ..errors import BackendUnavailable, ConfigurationError
from . import LoopbackMember, ManagedProcess, ServerGroup, free_ports, require_binary, wait_until
from .netns import LOOPBACK, Placement
from .tls import TLSFiles

__all__ = [
    "CLASSPATH_ENV_VAR",
    "DEFAULT_CLASSPATH",
    "INSTALL_HINT",
    "ZooKeeperEnsemble",
    "ZooKeeperMember",
    "ZooKeeperServer",
    "classpath",
    "four_letter_word",
]

INSTALL_HINT = "apt-get install zookeeper default-jre-headless (Debian/Ubuntu)"
CLASSPATH_ENV_VAR = "FENCING_COORD_ZOOKEEPER_CLASSPATH"
DEFAULT_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# The server connection factory that serves TLS (the default NIO one does not).
NETTY_FACTORY = "org.apache.zookeeper.server.NettyServerCnxnFactory"
# Debian's zookeeper.jar manifest omits netty-codec, which the Netty factory needs.
NETTY_CODEC_JAR = "/usr/share/java/netty-codec.jar"

# Small heap and the serial collector: a test server holds a few hundred znodes, and
# three JVMs share two cores with the tests.
JVM_OPTIONS = (
    "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
    "-Dzookeeper.admin.enableServer=false", "-Dzookeeper.jmx.log4j.disable=true",
    # A dead peer should not stall leader election for the default 5 s.
    "-Dzookeeper.cnxTimeout=1000",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
)

_MODE = re.compile(rb"^Mode: (\w+)", re.MULTILINE)
_SESSION = re.compile(rb"sid=0x([0-9a-f]+)")


def four_letter_word(port: int, word: str, host: str = "127.0.0.1", timeout: float = 2.0) -> bytes | None:
    """Send ZooKeeper four-letter word ``word`` to host:port; its answer, or None when
    nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(word.encode("ascii"))
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
    except OSError:
        return None


def classpath() -> str:
    """The Java classpath to run ZooKeeper with; ConfigurationError naming the fix when a
    jar is missing."""
    value = os.environ.get(CLASSPATH_ENV_VAR) or DEFAULT_CLASSPATH
    missing = [jar for jar in value.split(":") if jar and not Path(jar).exists()]
    if missing:
        raise ConfigurationError(
            f"ZooKeeper jar(s) not found: {', '.join(missing)}; install them with: {INSTALL_HINT} "
            f"(or set ${CLASSPATH_ENV_VAR} to a classpath holding zookeeper.jar and an slf4j binding)"
        )
    return value


@dataclass
class ZooKeeperMember(LoopbackMember):
    """One ZooKeeper server process of an ensemble (or the standalone server)."""

    myid: int
    client_port: int
    quorum_port: int
    election_port: int
    data_dir: Path
    process: ManagedProcess
    #: The TLS client port (``secureClientPort``), None without TLS.
    secure_port: int | None = None
    placement: Placement = LOOPBACK

    @property
    def name(self) -> str:
        return f"zk{self.myid}"

    @property
    def secure_endpoint(self) -> str:
        """``127.0.0.1:<secure client port>``; ConfigurationError when the member serves no TLS."""
        if self.secure_port is None:
            raise ConfigurationError(f"ZooKeeper member {self.name} serves no TLS port (started without tls=)")
        return f"127.0.0.1:{self.secure_port}"

    def ask(self, word: str, timeout: float = 1.0) -> bytes | None:
        """This member's answer to four-letter word ``word`` (sent from inside its
        network namespace when it has one), or None when it does not answer."""
        return self.placement.probe(lambda: four_letter_word(self.client_port, word, self.host, timeout))

    def mode(self) -> str | None:
        """``leader``, ``follower`` or ``standalone`` while the server serves clients;
        None while it does not (starting, electing, stopped, paused)."""
        match = _MODE.search(self.ask("srvr") or b"")
        return match.group(1).decode() if match else None

    def serving(self) -> bool:
        return self.mode() is not None

    def serving_tls(self, tls: TLSFiles) -> bool:
        """True when the TLS client port answers ``srvr`` over TLS, with the client
        certificate of ``tls``. (The first TLS handshake of a new JVM takes seconds: a
        member counts as ready only once it is done.)"""
        if self.secure_port is None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.secure_port), timeout=5.0) as raw, \
                    tls.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.sendall(b"srvr")
                return _MODE.search(sock.recv(4096)) is not None
        except OSError:
            return False

    def sessions(self) -> set[int]:
        """Ids of the sessions whose clients are connected to this member now."""
        answer = self.ask("cons") or b""
        return {int(sid, 16) for sid in _SESSION.findall(answer)}


class ZooKeeperEnsemble(ServerGroup[ZooKeeperMember]):
    """``size`` ZooKeeper servers on loopback forming one ensemble; ``size=1`` is a
    standalone server.

    ``start()`` returns once every member serves clients (one leader and followers, or
    ``standalone``). ``base_dir`` (default: a new temporary directory, deleted by
    :meth:`stop`) holds each member's config, data directory and log; with ``keep_data``
    the members start on the data an earlier ensemble left there, else it is wiped.
    ``ports`` (default: free ones picked at start) are the client, quorum and
    leader-election port of each member in turn (and its TLS client port, with ``tls``).
    With ``tls`` every member also serves clients over TLS (see the module docstring).
    ``placements`` puts members in network namespaces (see :class:`ServerGroup`).
    """

    group_noun = "a ZooKeeper ensemble"
    member_noun = "ZooKeeper member"

    def __init__(self, size: int = 3, *, base_dir: str | Path | None = None, tick_ms: int = 200,
                 min_session_ms: int | None = None, max_session_ms: int = 60_000,
                 ready_timeout: float = 60.0, java: str | None = None, force_sync: bool = False,
                 ports: Sequence[int] | None = None, keep_data: bool = False, tls: TLSFiles | None = None,
                 placements: Sequence[Placement] | None = None) -> None:
        super().__init__(size, base_dir=base_dir, ready_timeout=ready_timeout, temp_prefix="fencing-coord-zk-",
                         placements=placements)
        self.tls = tls
        self._per_member = 3 if tls is None else 4
        self.ports = self._check_ports(ports, self._per_member)
        self.keep_data = keep_data
        self.tick_ms = tick_ms
        self.min_session_ms = 2 * tick_ms if min_session_ms is None else min_session_ms
        self.max_session_ms = max_session_ms
        self.java = java
        self.force_sync = force_sync

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Start every member and wait until all serve clients."""
        if self._started:
            return self
        java = self.java or require_binary("java", INSTALL_HINT)
        cp = classpath()
        if self.tls is not None and "netty-codec" not in cp and Path(NETTY_CODEC_JAR).exists():
            cp += ":" + NETTY_CODEC_JAR
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # A port picked free can be taken by another process before Java binds it; then
        # that member exits at once and the whole ensemble is tried again on new ports
        # (unless the ports were given).
        attempts = 1 if self.ports else 3
        for attempt in range(attempts):
            self._configure(java, cp)
            self._started = True
            try:
                for member in self.members:
                    member.process.start()
                self.wait_ready()
                return self
            except BackendUnavailable:
                bind_failure = any("Address already in use" in m.process.log_tail(200) for m in self.members)
                self._stop_members()
                if not bind_failure or attempt == attempts - 1:
                    self._cleanup()
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    # -- what clients need -----------------------------------------------------------

    @property
    def hosts(self) -> str:
        """``127.0.0.1:port,127.0.0.1:port,...`` listing every member."""
        return ",".join(m.endpoint for m in self.members)

    @property
    def url(self) -> str:
        """``zookeeper://host:port,host:port,...`` listing every member; with TLS,
        ``zookeepers://`` and their TLS ports, with the CA and the client certificate
        (``?ca=...&cert=...&key=...``)."""
        return self.url_of(*self.members)

    def url_of(self, *members: ZooKeeperMember, chroot: str = "") -> str:
        """A URL naming only ``members``, in that order, with an optional chroot."""
        path = "/" + chroot.strip("/") if chroot else ""
        if self.tls is None:
            return "zookeeper://" + ",".join(m.endpoint for m in members) + path
        return "zookeepers://" + ",".join(m.secure_endpoint for m in members) + path + "?" + self.tls.query()

    # -- faults ----------------------------------------------------------------------

    def leader(self, timeout: float = 30.0, among: Sequence[ZooKeeperMember] | None = None) -> ZooKeeperMember:
        """The member that leads now (the server itself when standalone); waits up to
        ``timeout`` s for an election. With ``among``, only those members count."""
        return self._find_member(lambda m: m.mode() in ("leader", "standalone"), timeout, "a ZooKeeper leader",
                                 among)

    def followers(self) -> list[ZooKeeperMember]:
        """The members that serve as followers now."""
        return [m for m in self.members if m.running() and m.mode() == "follower"]

    def _wait_restarted(self, member: ZooKeeperMember) -> None:
        """A restarted member serves again once the whole ensemble serves clients again."""
        self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every member serves clients: ``standalone``, or one leader and the
        rest followers."""
        limit = self.ready_timeout if timeout is None else timeout

        def ready() -> bool:
            self._check_running()
            modes = [m.mode() for m in self.members]
            serving = modes == ["standalone"] if self.size == 1 else (
                None not in modes and modes.count("leader") == 1)
            return serving and (self.tls is None or all(m.serving_tls(self.tls) for m in self.members))

        wait_until(ready, limit, f"ZooKeeper ensemble of {self.size} in {self.base_dir}", interval=0.1)

    # -- internals ---------------------------------------------------------------------

    def _configure(self, java: str, cp: str) -> None:
        self.members = []
        per = self._per_member
        ports = self.ports or free_ports(per * self.size)
        for i in range(self.size):
            myid = i + 1
            client, quorum, election, *secure = ports[per * i: per * i + per]
            member_dir = self.base_dir / f"zk{myid}"
            data_dir = member_dir / "data"
            if not self.keep_data:
                shutil.rmtree(member_dir, ignore_errors=True)
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / "myid").write_text(f"{myid}\n")
            argv = [java, *JVM_OPTIONS, "-cp", cp, MAIN_CLASS, str(member_dir / "zoo.cfg")]
            placement = self.placements[i]
            process = ManagedProcess(placement.command(argv), self.base_dir / f"zk{myid}.log", cwd=member_dir)
            self.members.append(ZooKeeperMember(myid, client, quorum, election, data_dir, process,
                                                secure[0] if secure else None, placement))
        for member in self.members:
            (member.data_dir.parent / "zoo.cfg").write_text(self._config(member))

    def _config(self, member: ZooKeeperMember) -> str:
        lines = [
            f"tickTime={self.tick_ms}",
            # initLimit/syncLimit are in ticks: 10 s to sync at start, 2 s to stay in sync.
            f"initLimit={max(10, 10_000 // self.tick_ms)}",
            f"syncLimit={max(5, 2_000 // self.tick_ms)}",
            f"dataDir={member.data_dir}",
            f"clientPort={member.client_port}",
            f"clientPortAddress={member.host}",
            f"minSessionTimeout={self.min_session_ms}",
            f"maxSessionTimeout={self.max_session_ms}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            # Snapshots and purging are irrelevant for short-lived servers.
            "autopurge.purgeInterval=0",
            "maxClientCnxns=0",
            # fsync of the transaction log per write; off by default for these throwaway
            # servers (a killed process loses nothing: its writes are in the OS's cache).
            f"forceSync={'yes' if self.force_sync else 'no'}",
        ]
        if self.size > 1:
            lines += [
                f"server.{m.myid}={m.host}:{m.quorum_port}:{m.election_port}" for m in self.members
            ]
        if self.tls is not None:
            lines += self._tls_config(member, self.tls)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _tls_config(member: ZooKeeperMember, tls: TLSFiles) -> list[str]:
        # ZooKeeper's PEM key store is one file holding the private key and its
        # certificate chain. Keys zoo.cfg does not know become zookeeper.* system properties.
        key_store = member.data_dir.parent / "server-keystore.pem"
        key_store.write_bytes(tls.server_key.read_bytes() + tls.server_cert.read_bytes())
        key_store.chmod(0o600)
        return [
            f"secureClientPort={member.secure_port}",
            "secureClientPortAddress=127.0.0.1",
            f"serverCnxnFactory={NETTY_FACTORY}",
            f"ssl.keyStore.location={key_store}",
            "ssl.keyStore.type=PEM",
            f"ssl.trustStore.location={tls.ca}",
            "ssl.trustStore.type=PEM",
            f"ssl.clientAuth={'need' if tls.client_cert_auth else 'none'}",
        ]



class ZooKeeperServer(ZooKeeperEnsemble):
    """A standalone ZooKeeper server (a :class:`ZooKeeperEnsemble` of one)."""

    def __init__(self, *, base_dir: str | Path | None = None, tick_ms: int = 200,
                 min_session_ms: int | None = None, max_session_ms: int = 60_000,
                 ready_timeout: float = 60.0, java: str | None = None, force_sync: bool = False,
                 tls: TLSFiles | None = None) -> None:
        super().__init__(1, base_dir=base_dir, tick_ms=tick_ms, min_session_ms=min_session_ms,
                         max_session_ms=max_session_ms, ready_timeout=ready_timeout, java=java,
                         force_sync=force_sync, tls=tls)

    @property
    def member(self) -> ZooKeeperMember:
        return self.members[0]

