"""The demo's report (timelines, verdicts) and :func:`run_demo`, which runs every scenario."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from ..config import connect
from ..errors import ConfigurationError
from ..observability import render_samples
from .scenario import DEFAULT_TTL, Outcome, backend_label, lease_word, run_scenario

__all__ = ["local_servers", "print_metrics", "print_timeline", "print_verdicts", "run_demo"]

# -- the report ------------------------------------------------------------------------------


INTRO = """\
The pause scenario: a lock holder writes, checks that it still holds the lock, and is
paused (SIGSTOP) right before its next write. Its {lease} expires on the server; a
successor is granted the lock with a larger token and writes. The holder wakes up
(SIGCONT) and makes the write it was about to make, with its old token.
Each backend runs it twice: through an UnfencedResource and through a FencedResource
(the same SQLite database, shared by the processes).
"""


def print_timeline(outcome: Outcome, out: TextIO) -> None:
    """Print one run: seconds since it started, who did what, with which token."""
    out.write(f"\n== {outcome.backend}, {outcome.resource} resource ({outcome.url})\n")
    width = max(len(e.what) for e in outcome.events)
    for event in outcome.events:
        token = f"token {event.token}" if event.token is not None else ""
        line = f"  {event.t:7.3f}s  {event.actor:<9}  {event.what:<{width}}  {token:<9} {event.note}"
        out.write(line.rstrip() + "\n")
    out.write(f"  final value: {outcome.final_value!r}, from the {outcome.final_from} -> {outcome.verdict}\n")


def print_verdicts(outcomes: Sequence[Outcome], out: TextIO) -> None:
    """Print the verdict table and one greppable line per backend:
    ``etcd: fenced=refused unfenced=corrupted``."""
    headers = ("backend", "resource", "holder token", "successor token", "late write", "final value from", "verdict")
    rows = [
        (
            o.backend, o.resource, str(o.holder_token), str(o.successor_token),
            "accepted" if o.late_accepted else "refused" if o.late_accepted is False else "?",
            o.final_from, o.verdict,
        )
        for o in outcomes
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out.write("\n")
    for row in (headers, tuple("-" * w for w in widths), *rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write("\n")
    by_backend: dict[str, dict[str, str]] = {}
    for o in outcomes:
        by_backend.setdefault(o.backend, {})[o.resource] = o.verdict
    for backend, verdicts in by_backend.items():
        out.write(f"{backend}: fenced={verdicts.get('fenced', '?')} unfenced={verdicts.get('unfenced', '?')}\n")


def print_metrics(outcomes: Sequence[Outcome], out: TextIO) -> None:
    """Print the metrics the runs' processes recorded, per backend, summed over its runs
    (counters added up, histograms as count, sum, min and max), named as Prometheus names
    them (see :mod:`fencing_coord.observability`)."""
    by_backend: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]] = {}
    for outcome in outcomes:
        merged = by_backend.setdefault(outcome.backend, {})
        for name, labels, values in outcome.metrics:
            merged.setdefault((name, tuple(sorted(labels.items()))), []).extend(values)
    for backend, merged in by_backend.items():
        out.write(f"\nmetrics of the {backend} runs (holder and successor processes, fenced and unfenced runs):\n")
        samples = [(name, dict(labels), values) for (name, labels), values in sorted(merged.items())]
        for line in render_samples(samples) or ["(none recorded)"]:
            out.write(f"  {line}\n")


def run_demo(urls: Sequence[str], out: TextIO, *, ttl: float = DEFAULT_TTL) -> list[Outcome]:
    """Run the scenario unfenced, then fenced, on every URL, printing each run's timeline
    as it ends, then the verdict table and the metrics of the runs. Returns the outcomes
    (``all(o.expected for o in outcomes)`` is success).

    Raises :class:`ConfigurationError` for a URL whose backend cannot contend across
    processes (``memory://``), :class:`BackendUnavailable` when a server cannot be
    reached, :class:`DemoError` when a run fails.
    """
    for url in urls:
        _check_url(url)
    labels = {backend_label(url) for url in urls}
    out.write("\n" + INTRO.format(lease="/".join(sorted({lease_word(b) for b in labels}))))
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="fencing-coord-demo-") as tmp:
        for url in urls:
            for fenced in (False, True):
                outcome = run_scenario(url, fenced=fenced, workdir=Path(tmp), ttl=ttl)
                print_timeline(outcome, out)
                out.flush()
                outcomes.append(outcome)
    print_verdicts(outcomes, out)
    print_metrics(outcomes, out)
    return outcomes


def _check_url(url: str) -> None:
    """Connect once: a bad URL or an unreachable server fails before any process starts."""
    with connect(url, ttl=DEFAULT_TTL) as backend:
        if not backend.capabilities.multiprocess:
            raise ConfigurationError(
                f"{url}: the demo runs the holder and the successor as separate processes, and this "
                "backend cannot be shared between processes; use etcd:// or zookeeper://"
            )


@contextlib.contextmanager
def local_servers(out: TextIO) -> Iterator[list[str]]:
    """Start a single-node etcd, a standalone ZooKeeper and, when ``redis-server`` is
    installed, a Redis with AOF (``appendfsync always``) from the binaries on PATH; yield
    their URLs, stop them (and delete their data) on exit. Raises
    :class:`~fencing_coord.devservers.MissingSoftware`, naming the packages to install,
    when etcd or ZooKeeper is missing (Redis is optional)."""
    from ..devservers import require_servers
    from ..servers.etcd import EtcdServer
    from ..servers.zookeeper import ZooKeeperServer

    require_servers(etcd=True, zookeeper=True)
    with_redis = shutil.which("redis-server") is not None
    with contextlib.ExitStack() as stack:
        names = "etcd (single node), ZooKeeper (standalone)" + (", Redis (AOF)" if with_redis else "")
        out.write(f"starting local servers from the binaries on PATH: {names}\n")
        out.flush()
        etcd = stack.enter_context(EtcdServer())
        zookeeper = stack.enter_context(ZooKeeperServer())
        urls = [etcd.url, zookeeper.url]
        out.write(f"  etcd:      {etcd.url}\n  zookeeper: {zookeeper.url}\n")
        if with_redis:
            from ..servers.redis import RedisServer

            redis = stack.enter_context(RedisServer())
            urls.append(redis.url)
            out.write(f"  redis:     {redis.url}\n")
        yield urls
