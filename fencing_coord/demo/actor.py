"""The holder and successor processes of the scenario (``python -m fencing_coord.demo holder|successor``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from ..config import connect
from ..errors import FencingCoordError
from ..gate import FencedResource, UnfencedResource
from ..observability import Metrics, RecordingSink, set_metrics
from ..stores.sqlite import SQLiteStore
from .scenario import DEFAULT_TTL, FIRST_VALUE, KEY, LATE_VALUE, RESOURCE, STEP_SLACK, SUCCESSOR_VALUE

__all__ = ["child_main"]

# -- the children ----------------------------------------------------------------------------


def _emit(stream: IO[str], event: str, **fields: Any) -> None:
    stream.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
    stream.flush()


def child_main(argv: Sequence[str]) -> int:
    """``python -m fencing_coord.demo holder|successor ...``: one participant.

    The holder acquires, writes, checks its grant, reports ``checked`` and waits for a
    line on stdin (the parent pauses it there) before its late write. The successor
    acquires (waiting behind the holder), writes and releases. Both report JSON lines,
    the last one (``metrics``) with the metrics the process recorded.
    """
    parser = argparse.ArgumentParser(prog="python -m fencing_coord.demo")
    parser.add_argument("role", choices=["holder", "successor"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--lock", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--resource", choices=["fenced", "unfenced"], required=True)
    parser.add_argument("--ttl", type=float, default=DEFAULT_TTL)
    args = parser.parse_args(argv)
    out = sys.stdout
    sink = RecordingSink()
    previous = set_metrics(Metrics(sink))
    try:
        identity = f"{args.role}:{os.getpid()}"
        with SQLiteStore(args.db) as store, \
                connect(args.url, ttl=args.ttl, namespace=args.namespace, identity=identity) as backend:
            resource = FencedResource(store) if args.resource == "fenced" else UnfencedResource(store)
            _emit(out, "connected", ttl=backend.ttl)
            grant = backend.acquire(args.lock, timeout=4 * (args.ttl + STEP_SLACK),
                                    on_queued=lambda: _emit(out, "queued"))
            _emit(out, "acquired", token=grant.token)
            if args.role == "holder":
                result = resource.write(RESOURCE, KEY, FIRST_VALUE.encode(), token=grant.token, holder=identity)
                _emit(out, "wrote", token=grant.token, value=FIRST_VALUE, accepted=result.accepted,
                      reason=result.reason)
                # The check a careful holder makes; the pause comes right after it.
                _emit(out, "checked", token=grant.token, lost=grant.lost)
                sys.stdin.readline()
                value = LATE_VALUE
            else:
                value = SUCCESSOR_VALUE
            result = resource.write(RESOURCE, KEY, value.encode(), token=grant.token, holder=identity)
            _emit(out, "wrote", token=grant.token, value=value, accepted=result.accepted, reason=result.reason)
            held = backend.release(grant)
            _emit(out, "released", token=grant.token, held=held, lost_reason=grant.lost_reason)
        _emit(out, "metrics", samples=sink.samples())
    except FencingCoordError as exc:
        _emit(out, "error", error=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        set_metrics(previous)
    return 0
