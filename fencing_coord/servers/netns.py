"""Where a server runs: this process's network, or a Linux network namespace (``ip netns``).

A :class:`Placement` tells a server group which address a member binds and advertises,
and in which named network namespace (``/run/netns/<name>``, as ``ip netns add`` makes
them) its process runs. The namespace itself is made by the caller, for example by
``fencing_coord.testing.netlab``; nothing here creates or changes one.

Probes of a member (its health endpoint, a four-letter word) must be sent from inside
its namespace: :meth:`Placement.probe` runs a function on a short-lived thread that has
joined the namespace (``setns(2)`` changes the network namespace of the calling thread
only), so the rest of this process keeps its own network.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigurationError

__all__ = ["LOOPBACK", "NETNS_DIR", "Placement", "call_in_netns", "enter_netns"]

#: Where ``ip netns`` keeps the handles of named namespaces.
NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000

T = TypeVar("T")


def enter_netns(name: str) -> None:
    """Move the calling thread into the network namespace ``name``; threads it starts
    later are born there. ConfigurationError if the namespace does not exist or the
    process may not join it (needs CAP_SYS_ADMIN)."""
    path = NETNS_DIR / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigurationError(f"network namespace {name!r} cannot be opened ({path}): {exc}") from exc
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise ConfigurationError(f"cannot join network namespace {name!r}: {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Return ``fn()`` run on a new thread inside network namespace ``name`` (sockets it
    opens belong to that namespace); what ``fn`` raises is raised here."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            enter_netns(name)
            results.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"netns-probe-{name}", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


@dataclass(frozen=True)
class Placement:
    """Where one server process runs: ``host`` is the IPv4 address it binds and
    advertises; ``netns`` the named network namespace it runs in (None: this process's
    own network, where ``host`` must be a local address such as 127.0.0.1)."""

    host: str = "127.0.0.1"
    netns: str | None = None

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run at this placement: under ``ip netns exec <netns>`` (which
        execs the program, so the pid stays the server's own) when there is one."""
        if self.netns is None:
            return list(argv)
        return ["ip", "netns", "exec", self.netns, *argv]

    def probe(self, fn: Callable[[], T]) -> T:
        """``fn()`` run where this placement's network is (see :func:`call_in_netns`)."""
        if self.netns is None:
            return fn()
        return call_in_netns(self.netns, fn)


#: The default placement: this process's network, on 127.0.0.1.
LOOPBACK = Placement()
