"""Local etcd servers from the ``etcd`` binary on PATH: one node or a small cluster.

For tests, benchmarks and ``fencing-coord servers up``; nothing here depends on pytest
or on an etcd client library (readiness and leadership are read from etcd's own HTTP
endpoints, ``/health`` and the ``/v3/maintenance/status`` gateway).

    with EtcdCluster(size=3) as cluster:       # or EtcdServer() for one node
        backend = fc.connect(cluster.url)
        cluster.kill(cluster.leader())         # SIGKILL the leader ...
        cluster.restart(cluster.members[0])    # ... and start a member again on its data dir

Every member listens on loopback ports that were free at start, keeps its data in a
temporary directory (removed by :meth:`EtcdCluster.stop` unless the caller gave the
directory) and logs to ``<dir>/<name>.log``.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ..errors import BackendUnavailable, ConfigurationError
from . import LoopbackMember, ManagedProcess, ServerGroup, free_ports, require_binary, wait_until
from .netns import LOOPBACK, Placement
from .tls import TLSFiles

__all__ = ["INSTALL_HINT", "EtcdCluster", "EtcdMember", "EtcdServer", "EtcdTLS"]

INSTALL_HINT = "apt-get install etcd-server etcd-client (Debian/Ubuntu), or put an etcd release's binaries on PATH"


#: PEM files for serving etcd's clients over TLS (the certificates every local server uses).
EtcdTLS = TLSFiles


@dataclass
class EtcdMember(LoopbackMember):
    """One etcd process of a cluster."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: ManagedProcess
    tls: EtcdTLS | None = None
    placement: Placement = LOOPBACK

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def status(self, timeout: float = 2.0) -> dict[str, object]:
        """This member's ``/v3/maintenance/status`` as a dict; BackendUnavailable if it
        does not answer."""
        request = urllib.request.Request(
            self.client_url + "/v3/maintenance/status", data=b"{}", headers={"Content-Type": "application/json"}
        )
        def ask() -> dict[str, object]:
            with urllib.request.urlopen(request, timeout=timeout, context=self._ssl()) as response:
                body: dict[str, object] = json.load(response)
                return body

        try:
            return self.placement.probe(ask)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"etcd member {self.name} ({self.endpoint}) does not answer: {exc}") from exc

    def healthy(self) -> bool:
        """True when the member answers ``/health`` with ``{"health": "true"}`` (it has
        a leader and serves linearizable requests)."""
        def ask() -> bool:
            with urllib.request.urlopen(self.client_url + "/health", timeout=2.0, context=self._ssl()) as response:
                return bool(json.load(response).get("health") == "true")

        try:
            return self.placement.probe(ask)
        except (OSError, ValueError):
            return False

    def _ssl(self) -> ssl.SSLContext | None:
        return None if self.tls is None else self.tls.ssl_context()


class EtcdCluster(ServerGroup[EtcdMember]):
    """``size`` etcd members on loopback forming one cluster (``size=1``: a single node).

    ``start()`` returns once every member reports healthy. ``base_dir`` (default: a new
    temporary directory, deleted by :meth:`stop`) holds each member's data directory and
    log; a member whose data directory exists starts on that data. ``ports`` (default:
    free ones picked at start) are the client and peer port of each member in turn.
    ``extra_args`` are appended to every member's command line. ``placements``
    puts members in network namespaces (see :class:`ServerGroup`); TLS members stay on
    loopback (the test certificates name 127.0.0.1).
    """

    group_noun = "an etcd cluster"
    member_noun = "etcd member"

    def __init__(self, size: int = 3, *, base_dir: str | Path | None = None, extra_args: tuple[str, ...] = (),
                 ready_timeout: float = 30.0, tls: EtcdTLS | None = None, ports: Sequence[int] | None = None,
                 placements: Sequence[Placement] | None = None) -> None:
        super().__init__(size, base_dir=base_dir, ready_timeout=ready_timeout, temp_prefix="fencing-coord-etcd-",
                         placements=placements)
        if tls is not None and any(p != LOOPBACK for p in self.placements):
            raise ConfigurationError("an etcd cluster with TLS runs on loopback only (no placements)")
        self.extra_args = extra_args
        self.tls = tls
        self.ports = self._check_ports(ports, 2)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Start every member and wait until all are healthy."""
        if self._started:
            return self
        binary = require_binary("etcd", INSTALL_HINT)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = self.ports or free_ports(2 * self.size)
        names = [f"m{i}" for i in range(self.size)]
        hosts = [p.host for p in self.placements]
        initial = ",".join(f"{n}=http://{hosts[i]}:{ports[2 * i + 1]}" for i, n in enumerate(names))
        token = f"fencing-coord-{self.base_dir.name}"
        scheme = "http" if self.tls is None else "https"
        tls_args: list[str] = []
        if self.tls is not None:
            tls_args = ["--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                        "--trusted-ca-file", str(self.tls.ca)]
            if self.tls.client_cert_auth:
                tls_args.append("--client-cert-auth")
        for i, name in enumerate(names):
            client, peer, host = ports[2 * i], ports[2 * i + 1], hosts[i]
            data_dir = self.base_dir / name
            argv = [
                binary, "--name", name, "--data-dir", str(data_dir),
                "--listen-client-urls", f"{scheme}://{host}:{client}",
                "--advertise-client-urls", f"{scheme}://{host}:{client}",
                "--listen-peer-urls", f"http://{host}:{peer}",
                "--initial-advertise-peer-urls", f"http://{host}:{peer}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
                "--logger", "zap", "--log-level", "warn",
                *tls_args,
                *self.extra_args,
            ]
            process = ManagedProcess(self.placements[i].command(argv), self.base_dir / f"{name}.log")
            self.members.append(EtcdMember(name, client, peer, data_dir, process, self.tls, self.placements[i]))
        self._started = True
        try:
            for member in self.members:
                member.process.start()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    # -- what clients need -----------------------------------------------------------

    @property
    def url(self) -> str:
        """``etcd://host:port,host:port,...`` listing every member (``etcds://...?ca=
        ...&cert=...&key=...`` with TLS)."""
        return self.url_of(*self.members)

    def url_of(self, *members: EtcdMember) -> str:
        """A URL naming only ``members``."""
        hosts = ",".join(m.endpoint for m in members)
        return f"etcd://{hosts}" if self.tls is None else f"etcds://{hosts}?{self.tls.query()}"

    @property
    def endpoints(self) -> str:
        """The members' client URLs, comma-separated (for ``etcdctl --endpoints``)."""
        return ",".join(m.client_url for m in self.members)

    # -- faults ----------------------------------------------------------------------

    def leader(self, timeout: float = 30.0, among: Sequence[EtcdMember] | None = None) -> EtcdMember:
        """The member that is leader now (waits up to ``timeout`` s for an election);
        with ``among``, only those members count (e.g. the majority side of a partition,
        while a cut-off old leader may still believe it leads)."""

        def leads(member: EtcdMember) -> bool:
            try:
                status = member.status()
            except BackendUnavailable:
                return False
            header = status.get("header")
            return isinstance(header, dict) and status.get("leader") == header.get("member_id")

        return self._find_member(leads, timeout, "an etcd leader", among)

    def _wait_restarted(self, member: EtcdMember) -> None:
        """A restarted member serves again once it is healthy."""
        wait_until(member.healthy, self.ready_timeout, f"etcd member {member.name} after restart")

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Wait until every running member reports healthy."""
        limit = self.ready_timeout if timeout is None else timeout

        def ready() -> bool:
            self._check_running()
            return all(m.healthy() for m in self.members)

        wait_until(ready, limit, f"etcd cluster of {self.size} in {self.base_dir}")


class EtcdServer(EtcdCluster):
    """A single etcd node (an :class:`EtcdCluster` of one)."""

    def __init__(self, *, base_dir: str | Path | None = None, extra_args: tuple[str, ...] = (),
                 ready_timeout: float = 30.0, tls: EtcdTLS | None = None) -> None:
        super().__init__(1, base_dir=base_dir, extra_args=extra_args, ready_timeout=ready_timeout, tls=tls)

    @property
    def member(self) -> EtcdMember:
        return self.members[0]

