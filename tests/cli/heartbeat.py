"""A command for ``fencing-coord run`` that shows how long it and its group live.

    python heartbeat.py DIR           fork a grandchild into the same process group; both
                                      write DIR/beat-<pid> (their time.monotonic()) every
                                      10 ms until killed
    python heartbeat.py DIR --once    record the start and exit 0

Writes ``DIR/cmd.json`` on start: its pid, its process group, ``start`` (time.monotonic(),
one clock for every process on Linux) and, unless ``--once``, the grandchild's pid.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # readers never see a half-written file


def beat(directory: Path) -> None:
    path = directory / f"beat-{os.getpid()}"
    while True:
        write(path, repr(time.monotonic()))
        time.sleep(0.01)


def main() -> None:
    directory = Path(sys.argv[1])
    start = time.monotonic()
    record = {"pid": os.getpid(), "pgid": os.getpgid(0), "start": start}
    if sys.argv[2:] == ["--once"]:
        write(directory / "cmd.json", json.dumps(record))
        return
    grandchild = os.fork()
    if grandchild == 0:
        beat(directory)
    write(directory / "cmd.json", json.dumps({**record, "grandchild": grandchild}))
    beat(directory)


if __name__ == "__main__":
    main()
