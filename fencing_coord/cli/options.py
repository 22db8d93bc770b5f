"""What the subcommands that talk to a backend share: the connection options
(``--url``, ``--namespace``, ``--ttl``), the types of duration arguments, and the backend
those options name."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import textwrap
import time
from collections.abc import Iterator
from typing import Any

from ..config import ENV_VAR, OptionReader, connect, load_backend_class, parse_url
from ..deadlines import TRY_ONCE
from ..errors import ConfigurationError
from ..interface import LockBackend

__all__ = [
    "add_connection_options",
    "connect_timeout",
    "open_backend",
    "paragraph",
    "positive_seconds",
    "process_started",
    "seconds",
]

# The connect timeout of a backend URL that does not set one (OptionReader.common's).
_DEFAULT_TIMEOUT = 5.0
#: Seconds kept, of a command's --timeout, for reporting a failed connect and exiting.
_EXIT_RESERVE = 0.4


@contextlib.contextmanager
def open_backend(args: argparse.Namespace, **extra: Any) -> Iterator[LockBackend]:
    """Connect to ``--url`` (or ``$FENCING_COORD_URL``) with the common options given;
    sets ``args.namespace`` to the backend's when it was not given. Closed on exit.

    Raises :class:`ConfigurationError` when there is no URL, and whatever
    :func:`fencing_coord.connect` raises.
    """
    url = args.url or os.environ.get(ENV_VAR)
    if not url:
        raise ConfigurationError(f"no backend URL: pass --url URL or set ${ENV_VAR} (e.g. etcd://127.0.0.1:2379)")
    options: dict[str, Any] = dict(extra)
    if getattr(args, "ttl", None) is not None:
        options["ttl"] = args.ttl
    if args.namespace is not None:
        options["namespace"] = args.namespace
    with connect(url, **options) as backend:
        if args.namespace is None:
            args.namespace = backend.namespace
        yield backend


def process_started() -> float:
    """The ``time.monotonic()`` at which this process started (Linux: from /proc; where
    that cannot be read, now)."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            # Field 22, start time in clock ticks after boot; the name field may hold spaces.
            started = int(stat.read().rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")
            age = float(uptime.read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return now
    return now - min(max(0.0, age), 60.0)


def connect_timeout(args: argparse.Namespace, deadline: float) -> float:
    """The ``timeout`` option for connecting so that the command can report a failure
    and exit by ``deadline``: what is left once the backend's module is loaded (less
    :data:`_EXIT_RESERVE`, at least :data:`~fencing_coord.deadlines.TRY_ONCE`), and
    never more than the URL's own ``timeout``. Raises :class:`ConfigurationError` as
    ``connect`` would for a bad URL (the keyword must not hide it)."""
    url = args.url or os.environ.get(ENV_VAR)
    if not url:
        return TRY_ONCE  # open_backend says what is missing
    parsed = parse_url(url)
    own = OptionReader(parsed, {}).seconds("timeout", _DEFAULT_TIMEOUT)
    load_backend_class(parsed.scheme, parsed.redacted())  # its imports (grpc: ~1 s) count too
    left = max(TRY_ONCE, deadline - _EXIT_RESERVE - time.monotonic())
    return math.floor(min(left, own) * 100) / 100


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be a finite number >= 0")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 seconds (a finite number > 0)")
    return value


def add_connection_options(parser: argparse.ArgumentParser, *, ttl: bool = False) -> None:
    """Add ``--url`` and ``--namespace`` (and ``--ttl`` with ``ttl``) to ``parser``."""
    parser.add_argument("--url", help=f"backend URL, e.g. etcd://127.0.0.1:2379 (default: ${ENV_VAR})")
    parser.add_argument("--namespace", metavar="NS",
                        help="key prefix isolating one application (default: the URL's, or 'default')")
    if ttl:
        parser.add_argument("--ttl", type=positive_seconds, metavar="S",
                            help="lease/session TTL in seconds (default: the URL's, or 10)")


def paragraph(text: str) -> str:
    """``text`` wrapped for a terminal (the raw formatter keeps the exit-code table as is)."""
    return textwrap.fill(text, 88)
