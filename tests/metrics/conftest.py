"""Fixtures of the metrics tests: a recording sink installed for one test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fencing_coord.observability import Metrics, RecordingSink, set_metrics


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    """A :class:`RecordingSink` installed process-wide for this test only."""
    recording = RecordingSink()
    previous = set_metrics(Metrics(recording))
    try:
        yield recording
    finally:
        set_metrics(previous)
