"""``run``'s command cannot outlive ``run``: :func:`start_tethered`.

``run`` holds a lease only as long as it lives. If it is SIGKILLed (or crashes), nobody
is left to stop its command when the lease lapses, and the next holder's command would
run next to it. So the command and every process it starts in its process group die
with ``run``, by two means:

* **parent-death signal** (Linux): the command is started through a trampoline
  (:mod:`.tether_child` in ``exec`` mode), which asks the kernel to SIGKILL it when
  ``run``'s forking thread dies (``prctl(PR_SET_PDEATHSIG)``), checks that ``run`` did
  not die before that took effect, and then execs the command (the setting survives
  ``execve``).
* **guard**: a second small process (:mod:`.tether_child` in ``guard`` mode) joins the
  command's process group, ignores the signals ``run`` forwards to the group, and
  blocks on a pipe only ``run`` writes to. When that pipe reaches end-of-file, whether ``run`` exited or was killed,
  the guard SIGKILLs the whole group, itself included: grandchildren that the command
  forked into its group die too. While the guard lives, the group's id cannot be reused.

The command only execs once the guard is in its group and ready, so there is no moment
at which a grandchild could be forked unguarded. Processes that leave the group
(``setsid``, ``setpgid``) are beyond reach.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Tethered", "start_tethered"]


@dataclass
class Tethered:
    """A command started by :func:`start_tethered`: ``process`` is the command itself (its
    pid is the process group's id); ``guard`` the process that kills the group when the
    pipe behind ``_watch`` closes."""

    process: subprocess.Popen[bytes]
    guard: subprocess.Popen[bytes]
    _watch: int = field(repr=False)

    @property
    def pgid(self) -> int:
        return self.process.pid

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the command's process group (the guard included)
        and reap the guard. Call once the command exited or must die; idempotent."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)
        if self._watch >= 0:
            os.close(self._watch)
            self._watch = -1
        self.guard.wait()


def start_tethered(command: Sequence[str], env: dict[str, str]) -> Tethered:
    """Start ``command`` with ``env`` in a new process group that cannot outlive this
    process (see the module docstring); return once the command has been exec'ed.

    Must be called from a thread that lives as long as the command should (the main
    thread): the parent-death signal fires when the *thread* that forked exits.

    Raises :class:`FileNotFoundError` / :class:`PermissionError` (or another
    :class:`OSError`) when the command cannot be executed; nothing is left running then.
    """
    python = [sys.executable, "-I", "-S", str(Path(__file__).with_name("tether_child.py"))]
    go_read, go_write = os.pipe()
    error_read, error_write = os.pipe()
    try:
        process = subprocess.Popen(
            [*python, "exec", str(os.getpid()), str(go_read), str(error_write), "--", *command],
            env=env, process_group=0, pass_fds=(go_read, error_write),
        )
    except BaseException:
        for fd in (go_read, go_write, error_read, error_write):
            os.close(fd)
        raise
    os.close(go_read)
    os.close(error_write)
    try:
        guard, watch = _start_guard(python, process.pid)
    except BaseException:
        os.close(go_write)  # the trampoline reads end-of-file and exits without exec
        os.close(error_read)
        process.wait()
        raise
    tethered = Tethered(process, guard, watch)
    try:
        try:
            os.write(go_write, b"go")
        finally:
            os.close(go_write)
        with os.fdopen(error_read, "rb") as errors:
            failure = errors.read()  # end-of-file without data: the exec succeeded
    except BaseException:  # Ctrl-C while starting: nothing may be left running
        tethered.kill_group()
        process.wait()
        raise
    if failure:
        process.wait()
        tethered.kill_group()
        code = int(failure)
        raise OSError(code, os.strerror(code), command[0])
    return tethered


def _start_guard(python: list[str], pgid: int) -> tuple[subprocess.Popen[bytes], int]:
    """The guard of process group ``pgid``, once it ignores the forwarded signals; and
    the write end of its pipe (close it to make the guard kill the group)."""
    watch_read, watch_write = os.pipe()
    ready_read, ready_write = os.pipe()
    try:
        guard = subprocess.Popen(
            [*python, "guard", str(pgid), str(watch_read), str(ready_write)],
            process_group=pgid, pass_fds=(watch_read, ready_write),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
    except BaseException:
        for fd in (watch_read, watch_write, ready_read, ready_write):
            os.close(fd)
        raise
    os.close(watch_read)
    os.close(ready_write)
    with os.fdopen(ready_read, "rb") as ready:
        if ready.read() != b"ready":
            os.close(watch_write)
            guard.wait()
            raise OSError(errno.ECHILD, f"the guard of process group {pgid} exited at start")
    return guard, watch_write
