"""How a ``fencing-coord`` command ends: its exit codes, and the one line it prints on
stderr when it fails.

==== ===================================================================================
code meaning
==== ===================================================================================
0    success (``run``: CMD exited 0; ``demo``: fenced=refused and unfenced=corrupted)
1    ``demo``: the scenario did not come out as expected, or a run failed
2    bad arguments, bad URL or option, unusable configuration
69   a server cannot be reached, or cannot be started (EX_UNAVAILABLE)
75   ``run``: the lock was not acquired within ``--timeout`` (EX_TEMPFAIL)
76   ``run``: the lock was lost while CMD ran; CMD was stopped
126  ``run``: CMD is not executable
127  ``run``: CMD was not found
130  interrupted (Ctrl-C)
N    ``run``: CMD's own exit status; 128+S when CMD was killed by signal S
==== ===================================================================================
"""

from __future__ import annotations

import sys

from ..devservers import MissingSoftware
from ..errors import (
    BackendUnavailable,
    ConfigurationError,
    FencingCoordError,
    InvalidArgument,
    InvalidArgumentType,
    LockTimeout,
)

__all__ = [
        "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_LOST",
    "EXIT_NOT_EXECUTABLE",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "PROG",
    "RUN_EXIT_CODES_HELP",
    "exit_code_for",
    "report",
]

PROG = "fencing-coord"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
EXIT_TIMEOUT = 75
EXIT_LOST = 76
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130

#: The exit codes ``run`` can return, for its ``--help`` (the other subcommands return
#: 0, 2, 69 and 130 as their descriptions say; the README lists every code).
RUN_EXIT_CODES_HELP = """\
exit codes:
  0    CMD exited 0
  2    bad arguments, bad URL or option
  69   the server cannot be reached
  75   the lock was not acquired within --timeout
  76   the lock was lost while CMD ran; CMD was stopped
  126  CMD is not executable
  127  CMD was not found
  130  interrupted while waiting for the lock (Ctrl-C)
  N    CMD's own exit status (128+S when CMD was killed by signal S,
       or when run got signal S while waiting for the lock)
"""

_EXIT_FOR: tuple[tuple[type[BaseException], int], ...] = (
    (MissingSoftware, EXIT_UNAVAILABLE),  # before its base class, ConfigurationError
    (ConfigurationError, EXIT_USAGE),
    (InvalidArgument, EXIT_USAGE),
    (InvalidArgumentType, EXIT_USAGE),
    (BackendUnavailable, EXIT_UNAVAILABLE),
    (LockTimeout, EXIT_TIMEOUT),
)


def exit_code_for(exc: FencingCoordError) -> int:
    """The exit code of the table above for a library error (1 for any other)."""
    for cls, code in _EXIT_FOR:
        if isinstance(exc, cls):
            return code
    return EXIT_FAILED


def report(message: str) -> None:
    """Print ``fencing-coord: <message>`` on stderr (stdout belongs to the output, or
    to ``run``'s command)."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()
