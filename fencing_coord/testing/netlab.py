"""A network lab on one Linux machine: network namespaces joined by veth pairs to one
bridge, and faults on their links.

    reason = netlab.unavailable_reason()        # None when the lab can run here
    with NetLab() as lab:
        a, b = lab.add_node("m0"), lab.add_node("m1")
        subprocess.Popen(a.command(["etcd", ...]))   # runs inside a's namespace
        lab.isolate(a)                               # a reaches nobody, nobody reaches a
        lab.heal()

Namespaces are named ``fclab-<pid>-<random>-<node>``: runs never collide, :meth:`NetLab.close`
deletes exactly what this run made (killing what is still inside), and the next lab removes
those of a lab whose process died unclosed. Addresses are ``10.213.0.<n>/24`` inside the
lab's own namespaces only; nothing routes out of the bridge. Faults are iptables rules in
the nodes' namespaces (one atomic ``iptables-restore`` per change): a dropped packet is
lost silently, as on a cut cable. Delay is a user-space netfilter queue
(:mod:`fencing_coord.testing.netdelay`): kernels built without ``CONFIG_NET_SCH_NETEM``
have no ``tc netem``. Needs Linux, root, ``ip`` and ``iptables-restore``
(:func:`unavailable_reason` says which is missing).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self, TypeVar

from ..errors import ConfigurationError
from ..servers.netns import NETNS_DIR, Placement, call_in_netns

__all__ = ["PREFIX", "SUBNET", "Link", "NetLab", "Node", "remove_stale_labs", "unavailable_reason"]

_log = logging.getLogger(__name__)

#: Every lab namespace's name starts with this.
PREFIX = "fclab"
#: The lab's addresses: ``SUBNET.<n>/24``, n = 1, 2, ...
SUBNET = "10.213.0"
_BRIDGE = "br0"
_STALE = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+-")

T = TypeVar("T")


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigurationError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@functools.cache
def unavailable_reason() -> str | None:
    """Why the lab cannot run on this machine (a sentence naming the fix), or None when
    it can: it needs Linux, root, ``ip``, ``iptables-restore`` and the right to create a
    network namespace (checked by creating and deleting one)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run the tests as root)"
    for tool, package in (("ip", "iproute2"), ("iptables-restore", "iptables")):
        if shutil.which(tool) is None:
            return f"{tool!r} is not on PATH; install it with: apt-get install {package}"
    probe = f"{PREFIX}-{os.getpid()}-0-probe"
    try:
        _run(["ip", "netns", "add", probe])
    except ConfigurationError as exc:
        return f"cannot create a network namespace here: {exc}"
    with contextlib.suppress(ConfigurationError):
        _run(["ip", "netns", "del", probe])
    return None


@dataclass
class Link:
    """The faults on one node's link, as iptables rules in its namespace: addresses it
    may not send to / receive from, random loss each way (0..1), and added delay on what
    it sends."""

    isolated: bool = False
    blocked_out: set[str] = field(default_factory=set)
    blocked_in: set[str] = field(default_factory=set)
    loss_out: float = 0.0
    loss_in: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0

    def rules(self) -> str:
        """The ``iptables-restore --noflush`` input for this link: it replaces the rules
        of the lab's own chains (:data:`BASE_RULES` jumps to them from INPUT and OUTPUT
        on ``eth0``). The built-in chains stay, so a change never drops the packets a
        delayer holds (replacing a chain that queued a packet drops it)."""
        lines = ["*filter", f":{_IN} - [0:0]", f":{_OUT} - [0:0]"]  # declaring a chain flushes it
        if self.isolated:
            lines += [f"-A {_IN} -j DROP", f"-A {_OUT} -j DROP"]
        lines += [f"-A {_IN} -s {a} -j DROP" for a in sorted(self.blocked_in)]
        lines += [f"-A {_OUT} -d {a} -j DROP" for a in sorted(self.blocked_out)]
        if self.loss_in > 0:
            lines.append(f"-A {_IN} -m statistic --mode random --probability {self.loss_in:.4f} -j DROP")
        if self.loss_out > 0:
            lines.append(f"-A {_OUT} -m statistic --mode random --probability {self.loss_out:.4f} -j DROP")
        if self.delay_ms > 0:
            lines.append(f"-A {_OUT} -j NFQUEUE --queue-num 0 --queue-bypass")
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


_IN, _OUT = "FCLAB-IN", "FCLAB-OUT"
#: Made once per node: the built-in chains send what crosses eth0 to the lab's chains.
BASE_RULES = (f"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:{_IN} - [0:0]\n"
              f":{_OUT} - [0:0]\n-A INPUT -i eth0 -j {_IN}\n-A OUTPUT -o eth0 -j {_OUT}\nCOMMIT\n")


@dataclass
class Node:
    """One namespace of the lab, with address ``address`` on its interface ``eth0``."""

    name: str
    netns: str
    address: str
    link: Link = field(default_factory=Link)
    delayer: subprocess.Popen[str] | None = None

    @property
    def placement(self) -> Placement:
        """Where a server group member placed on this node runs."""
        return Placement(self.address, self.netns)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this node's namespace (``ip netns exec`` execs it: the pid
        is the program's own)."""
        return self.placement.command(argv)

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on a thread inside this node's namespace."""
        return call_in_netns(self.netns, fn)


class NetLab:
    """Namespaces joined to one bridge, and faults on their links. Use as a context
    manager, or call :meth:`start` and, in a ``finally``, :meth:`close`.

    Each fault has its own undo (:meth:`isolate`/:meth:`rejoin`, :meth:`drop`/
    :meth:`undrop`, :meth:`lose` with 0, :meth:`delay`/:meth:`undelay`), so threads may
    inject and lift different faults at once; :meth:`heal` lifts them all. Changes are
    serialised by a lock."""

    def __init__(self) -> None:
        self.run_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.prefix = f"{PREFIX}-{self.run_id}"
        self.nodes: list[Node] = []
        self._bridge_ns = f"{self.prefix}-br"
        self._namespaces: list[str] = []
        self._lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Remove labs left by dead processes, then make the bridge. ConfigurationError
        (saying why) when the lab cannot run here."""
        reason = unavailable_reason()
        if reason is not None:
            raise ConfigurationError(f"the network lab cannot run: {reason}")
        remove_stale_labs()
        self._add_namespace(self._bridge_ns)
        _run(["ip", "-n", self._bridge_ns, "link", "add", _BRIDGE, "type", "bridge"])
        _run(["ip", "-n", self._bridge_ns, "link", "set", _BRIDGE, "up"])
        return self

    def add_node(self, name: str) -> Node:
        """A new namespace joined to the bridge, with the next free address."""
        if not re.fullmatch(r"[a-z0-9]{1,12}", name) or any(n.name == name for n in self.nodes):
            raise ConfigurationError(f"bad or duplicate lab node name {name!r}")
        index = len(self.nodes) + 1
        if index > 250:
            raise ConfigurationError("a lab holds at most 250 nodes")
        node = Node(name, f"{self.prefix}-{name}", f"{SUBNET}.{index}")
        self._add_namespace(node.netns)
        port = f"v{index}"
        _run(["ip", "link", "add", "eth0", "netns", node.netns, "type", "veth", "peer", "name", port,
              "netns", self._bridge_ns])
        _run(["ip", "-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0"])
        _run(["ip", "-n", node.netns, "link", "set", "lo", "up"])
        _run(["ip", "-n", node.netns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", self._bridge_ns, "link", "set", port, "master", _BRIDGE])
        _run(["ip", "-n", self._bridge_ns, "link", "set", port, "up"])
        _run(["ip", "netns", "exec", node.netns, "iptables-restore"], stdin=BASE_RULES)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        """Stop the delayers, kill what still runs in the lab's namespaces and delete
        them. Idempotent; never raises (failures are logged)."""
        for node in self.nodes:
            self._stop_delayer(node)
        for name in reversed(self._namespaces):
            _delete_namespace(name)
        self._namespaces.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- faults ----------------------------------------------------------------------

    def partition(self, side_a: Iterable[Node], side_b: Iterable[Node]) -> None:
        """Cut every link between a node of ``side_a`` and a node of ``side_b`` (both
        ways); links within a side, and of nodes on neither side, stay as they are."""
        side_a, side_b = list(side_a), list(side_b)
        with self._lock:
            for a in side_a:
                for b in side_b:
                    a.link.blocked_out.add(b.address)
                    a.link.blocked_in.add(b.address)
                    b.link.blocked_out.add(a.address)
                    b.link.blocked_in.add(a.address)
            self._apply({*map(id, side_a), *map(id, side_b)})

    def isolate(self, node: Node) -> None:
        """Cut ``node`` off from every other node, both ways (by rules in its own
        namespace only: :meth:`rejoin` lifts exactly this)."""
        with self._lock:
            node.link.isolated = True
            self._apply({id(node)})

    def rejoin(self, node: Node) -> None:
        """Lift :meth:`isolate`."""
        with self._lock:
            node.link.isolated = False
            self._apply({id(node)})

    def drop(self, source: Node, destinations: Iterable[Node]) -> None:
        """One-way loss: what ``source`` sends to ``destinations`` is lost; what they
        send to it still arrives."""
        with self._lock:
            for dest in destinations:
                source.link.blocked_out.add(dest.address)
            self._apply({id(source)})

    def undrop(self, source: Node, destinations: Iterable[Node]) -> None:
        """Lift :meth:`drop`."""
        with self._lock:
            for dest in destinations:
                source.link.blocked_out.discard(dest.address)
            self._apply({id(source)})

    def lose(self, node: Node, probability: float, *, outgoing: bool = True, incoming: bool = True) -> None:
        """Lose each packet ``node`` sends (``outgoing``) and receives (``incoming``)
        with ``probability`` (0..1)."""
        if not 0.0 <= probability <= 1.0:
            raise ConfigurationError(f"loss probability must be within 0..1, not {probability}")
        with self._lock:
            if outgoing:
                node.link.loss_out = probability
            if incoming:
                node.link.loss_in = probability
            self._apply({id(node)})

    def delay(self, node: Node, delay_ms: float, jitter_ms: float = 0.0) -> None:
        """Hold each packet ``node`` sends for ``delay_ms ± jitter_ms`` ms."""
        self.delay_all([node], delay_ms, jitter_ms)

    def delay_all(self, nodes: Iterable[Node], delay_ms: float, jitter_ms: float = 0.0) -> None:
        """:meth:`delay` on each of ``nodes``, their delayers started side by side."""
        if delay_ms <= 0 or not 0 <= jitter_ms <= delay_ms:
            raise ConfigurationError(f"need delay > 0 and 0 <= jitter <= delay, not {delay_ms} ± {jitter_ms}")
        nodes = list(nodes)
        argv = [sys.executable, "-m", "fencing_coord.testing.netdelay", "--queue", "0",
                "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms)]
        with self._lock:
            for node in nodes:
                self._stop_delayer(node)  # one reader per queue: the old one goes first
            for node in nodes:
                node.delayer = subprocess.Popen(node.command(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                stdin=subprocess.DEVNULL, text=True)
            try:
                for node in nodes:
                    self._await_delayer(node)
            except BaseException:
                for node in nodes:
                    self._stop_delayer(node)
                raise
            for node in nodes:
                node.link.delay_ms, node.link.jitter_ms = delay_ms, jitter_ms
            self._apply({id(n) for n in nodes})

    def undelay(self, node: Node) -> None:
        """Lift :meth:`delay`."""
        with self._lock:
            node.link.delay_ms = node.link.jitter_ms = 0.0
            self._apply({id(node)})
            self._stop_delayer(node)

    @staticmethod
    def _await_delayer(node: Node) -> None:
        delayer = node.delayer
        assert delayer is not None
        assert delayer.stdout is not None
        assert delayer.stderr is not None
        if delayer.stdout.readline().strip() != "ready":
            delayer.wait()
            raise ConfigurationError(f"netdelay did not start in {node.netns}: {delayer.stderr.read().strip()}")

    def heal(self, *nodes: Node) -> None:
        """Remove every fault from ``nodes`` (default: every node) and from the rules of
        the other nodes that name them."""
        with self._lock:
            targets = list(nodes) or list(self.nodes)
            addresses = {n.address for n in targets}
            touched = set()
            for node in self.nodes:
                if node in targets:
                    node.link = Link()
                    touched.add(id(node))
                elif addresses & (node.link.blocked_in | node.link.blocked_out):
                    node.link.blocked_in -= addresses
                    node.link.blocked_out -= addresses
                    touched.add(id(node))
            self._apply(touched)
            for node in targets:
                self._stop_delayer(node)

    # -- internals -------------------------------------------------------------------

    def _apply(self, node_ids: set[int]) -> None:
        for node in self.nodes:
            if id(node) in node_ids:
                _run(["ip", "netns", "exec", node.netns, "iptables-restore", "--noflush"], stdin=node.link.rules())

    def _add_namespace(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self._namespaces.append(name)

    @staticmethod
    def _stop_delayer(node: Node) -> None:
        delayer, node.delayer = node.delayer, None
        if delayer is None:
            return
        delayer.terminate()
        try:
            delayer.wait(5)
        except subprocess.TimeoutExpired:
            delayer.kill()
            delayer.wait()
        for stream in (delayer.stdout, delayer.stderr):
            if stream is not None:
                stream.close()


def _delete_namespace(name: str) -> None:
    """Kill the processes inside namespace ``name`` and delete it; failures are logged."""
    try:
        pids = [int(p) for p in _run(["ip", "netns", "pids", name]).split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _run(["ip", "netns", "del", name])
    except (ConfigurationError, ValueError) as exc:
        _log.warning("could not delete network namespace %s: %s", name, exc)


def remove_stale_labs() -> list[str]:
    """Delete the lab namespaces whose creating process no longer exists; return their
    names. Namespaces of live processes (other runs in progress) are left alone."""
    removed = []
    names = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
    for name in names:
        match = _STALE.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if _alive(pid):
            continue
        _delete_namespace(name)
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        with contextlib.suppress(PermissionError):  # alive, and someone else's
            os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
