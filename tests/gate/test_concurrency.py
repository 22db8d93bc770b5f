"""Concurrency, on every store, with real processes.

1. Eight writers race on one resource with interleaved tokens while a watcher reads the
   highest token: no write below the highest admitted token is ever admitted, the final
   value is the highest token's, and the highest token never goes down.
2. Four workers increment a counter read-modify-write under ``memory://`` locks whose
   holders are paused past their lease: with fenced reads no increment is lost; through
   ``UnfencedResource`` the same schedule loses one increment per pause.
"""

from __future__ import annotations

import queue
from typing import Any

import pytest

from .gate_workers import CounterHarness, StoreSpec, highest_watcher, interleaved_writer, mp_context, writer_tokens

WRITERS = 8
WRITES_PER_WRITER = 40


def _collect(results: Any, count: int) -> list[tuple[Any, ...]]:
    collected = []
    for _ in range(count):
        try:
            item = results.get(timeout=120)
        except queue.Empty:
            raise AssertionError("a worker process never reported") from None
        assert item[0] == "ok", item[1]
        collected.append(item)
    return collected


def test_interleaved_writers_never_go_back(shared_store_spec: StoreSpec) -> None:
    ctx = mp_context()
    resource = "race"
    start = ctx.Barrier(WRITERS + 1)
    stop = ctx.Event()
    results, watch = ctx.Queue(), ctx.Queue()
    writers = [
        ctx.Process(target=interleaved_writer,
                    args=(shared_store_spec, resource, writer_tokens(w, WRITERS, WRITES_PER_WRITER), start, results))
        for w in range(WRITERS)
    ]
    watcher = ctx.Process(target=highest_watcher, args=(shared_store_spec, resource, start, stop, watch))
    for process in [*writers, watcher]:
        process.start()
    try:
        reports = _collect(results, WRITERS)
    finally:
        stop.set()
    [(_, readings, decreases)] = _collect(watch, 1)
    for process in [*writers, watcher]:
        process.join(30)

    outcomes = [outcome for report in reports for outcome in report[1]]
    assert all(report[2] for report in reports), "a writer saw highest_token go down"
    assert decreases == [], f"the watcher saw highest_token go down: {decreases[:5]}"
    assert readings > 0
    assert len(outcomes) == 2 * WRITERS * WRITES_PER_WRITER

    firsts = [(token, ok, before) for token, ok, before, repeat in outcomes if not repeat]
    accepted = sorted((token, before) for token, ok, before in firsts if ok)
    refused = [(token, before) for token, ok, before in firsts if not ok]
    assert refused, "the race produced no stale write: the test proves nothing"
    # Each token's first write raised the highest token, so the admitted ones form one
    # chain in token order: none was admitted below a higher one.
    previous = [None] + [token for token, _ in accepted[:-1]]
    assert [before for _, before in accepted] == previous
    # A refused write was refused by an admitted, higher token.
    admitted = {token for token, _ in accepted}
    for token, before in refused:
        assert before is not None
        assert before > token
        assert before in admitted
    # A repeat under the same token is admitted only while that token is the highest.
    for token, ok, before, repeat in outcomes:
        if repeat and ok:
            assert token in admitted
            assert before == token
        elif repeat:
            assert before is not None
            assert before > token

    with shared_store_spec.open() as store:
        top = WRITERS * WRITES_PER_WRITER
        assert accepted[-1][0] == top
        assert store.highest_token(resource) == top
        assert store.plain_read(resource, "k") == str(top).encode()


@pytest.mark.parametrize("fenced", [True, False], ids=["fenced", "unfenced"])
def test_counter_under_paused_holders(shared_store_spec: StoreSpec, fenced: bool) -> None:
    harness = CounterHarness(mp_context(), shared_store_spec, fenced=fenced, workers=4, increments=5)
    report = harness.run()

    assert report.pauses >= 1
    assert report.paused_grants_lost, "a paused holder's lease had not expired"
    assert report.accepted == 4 * 5
    assert report.highest_seen == sorted(report.highest_seen)
    if fenced:
        # Every paused holder's late write was refused and redone under a new grant.
        assert report.refused == report.pauses
        assert report.final == report.accepted == 20
    else:
        # The same schedule without fencing: each pause loses one increment.
        assert report.refused == 0
        assert report.final == 20 - report.pauses
        assert report.final < report.accepted, "the unfenced run lost nothing: the test could not fail"
