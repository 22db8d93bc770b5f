"""The two processes of :func:`fencing_coord.cli.tether.start_tethered`, run as
``python -I -S tether_child.py exec|guard ...`` (so: the standard library only, and as
little of it as possible, since both start on every ``fencing-coord run``).

    exec PARENT_PID GO_FD ERROR_FD -- CMD [ARGS...]
        Ask to be SIGKILLed when the parent's forking thread dies (Linux), check that the
        parent is still PARENT_PID, wait for "go" on GO_FD, then exec CMD. If the exec
        fails, its errno is written to ERROR_FD (closed on a successful exec).
    guard PGID WATCH_FD READY_FD
        Ignore the signals run forwards to the group, write "ready" to READY_FD, wait for
        end-of-file on WATCH_FD, then SIGKILL process group PGID (this process included).
"""

from __future__ import annotations

import errno
import os
import signal
import sys

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1
#: Exit status of the ``exec`` trampoline when it cannot exec the command (the errno is
#: reported to ``run`` through a pipe; the status only matters if nobody reads it).
_EXEC_FAILED = 127


def _exec_command(parent: int, go_fd: int, error_fd: int, command: list[str]) -> int:
    """Die with ``parent``, wait for its go, exec ``command``; on failure write the errno
    to ``error_fd`` and return :data:`_EXEC_FAILED`."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            os.write(error_fd, str(ctypes.get_errno()).encode())
            return _EXEC_FAILED
    if os.getppid() != parent:  # it died before the setting took effect
        return _EXEC_FAILED
    with os.fdopen(go_fd, "rb") as go:
        if go.read() != b"go":  # its guard could not be started, or it died
            return _EXEC_FAILED
    # Python ignores these at start-up, and ignored signals stay ignored across exec.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    os.set_inheritable(error_fd, False)  # closed by a successful exec: end-of-file for run
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        os.write(error_fd, str(exc.errno or errno.ENOEXEC).encode())
    return _EXEC_FAILED


def _guard(pgid: int, watch_fd: int, ready_fd: int) -> int:
    """Ignore the signals ``run`` forwards, say ready, wait for end-of-file on
    ``watch_fd``, then SIGKILL process group ``pgid`` (this process included)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    os.write(ready_fd, b"ready")
    os.close(ready_fd)
    while os.read(watch_fd, 64):
        pass
    os.killpg(pgid, signal.SIGKILL)
    return 0


def main(argv: list[str]) -> int:
    """Run the mode ``argv`` names (see the module docstring); return the exit status."""
    if argv[:1] == ["exec"] and len(argv) > 5 and argv[4] == "--":
        return _exec_command(int(argv[1]), int(argv[2]), int(argv[3]), argv[5:])
    if argv[:1] == ["guard"] and len(argv) == 4:
        return _guard(int(argv[1]), int(argv[2]), int(argv[3]))
    sys.stderr.write(f"usage: {argv[0] if argv else 'tether.py'} exec|guard ... (internal to fencing-coord run)\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
