"""The command ``fencing-coord run`` runs in the tests: it records its environment, then
runs until told to stop, recording a SIGTERM when it gets one.

    python child.py DIR [EXIT_STATUS]

Writes ``DIR/env.json`` (its FENCING_* variables and pid) on start. With EXIT_STATUS it
exits with that status at once; without, it waits for signals: on SIGTERM it writes
``DIR/terminated`` and exits 0; with ``DIR/ignore-term`` present it ignores SIGTERM (so
only SIGKILL stops it) after writing ``DIR/terminated``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # readers never see a half-written file


def main() -> None:
    directory = Path(sys.argv[1])
    ignore = (directory / "ignore-term").exists()

    def on_term(signum: int, _frame: FrameType | None) -> None:
        write(directory / "terminated", str(signum))
        if not ignore:
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    env = {k: v for k, v in os.environ.items() if k.startswith("FENCING_")}
    write(directory / "env.json", json.dumps({**env, "pid": os.getpid(), "pgid": os.getpgid(0)}))
    if len(sys.argv) > 2:
        sys.exit(int(sys.argv[2]))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
