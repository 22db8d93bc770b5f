"""How the ``fencing-coord`` process ends (:func:`fencing_coord.cli.console_main`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from fencing_coord import cli

# A daemon thread stopped by the interpreter's teardown while it holds a lock, and
# garbage whose finalizer takes that lock: what a gRPC thread and a gRPC call object
# left behind when ``run`` exited after a signal (the teardown's collection then waited
# forever). The command itself is ``--version``: any command ends the same way.
_STOPPED_HOLDER = textwrap.dedent("""
    import gc, sys, threading
    from fencing_coord import cli

    lock, held = threading.Lock(), threading.Event()

    def hold():
        with lock:
            held.set()
            threading.Event().wait()

    class Call:
        def __del__(self):
            with lock:
                pass

    # Only the teardown collects: a collection while the command runs (its allocations
    # can cross gc's threshold) would call __del__ there, and wait forever.
    gc.disable()
    threading.Thread(target=hold, daemon=True).start()
    held.wait()
    call = Call()
    call.cycle = call  # collected by the teardown's garbage collection, not before
    del call
    cli.console_main(sys.argv[1:])
""")


def test_the_process_ends_with_daemon_threads_holding_locks() -> None:
    """It ends with the command's status and its output, without the teardown that hung."""
    result = subprocess.run([sys.executable, "-c", _STOPPED_HOLDER, "--version"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == cli.EXIT_OK, result.stderr
    assert result.stdout.startswith("fencing-coord "), result.stdout


def test_without_daemon_threads_the_process_ends_as_usual() -> None:
    """The status of a usage error, through ``sys.exit`` (atexit handlers run)."""
    code = "import atexit, sys; from fencing_coord import cli; atexit.register(print, 'atexit ran'); " \
           "cli.console_main(sys.argv[1:])"
    result = subprocess.run([sys.executable, "-c", code, "no-such-command"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == cli.EXIT_USAGE, result.stderr
    assert result.stdout.strip() == "atexit ran"
