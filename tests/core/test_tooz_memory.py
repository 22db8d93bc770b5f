"""The tooz driver on the memory backend (``fencing-coord+memory://``): the entry point
resolves, and two coordinators of one process exclude each other with growing tokens."""

from __future__ import annotations

import uuid

import pytest

tooz = pytest.importorskip("tooz")
coordination = pytest.importorskip("tooz.coordination")


def test_memory_entry_point_locks_with_growing_tokens() -> None:
    url = f"fencing-coord+memory://tooz-{uuid.uuid4().hex[:8]}"
    first, second = coordination.get_coordinator(url, b"a"), coordination.get_coordinator(url, b"b")
    first.start()
    second.start()
    try:
        mine, theirs = first.get_lock(b"orders"), second.get_lock(b"orders")
        assert mine.acquire(blocking=False)
        assert not theirs.acquire(blocking=False)
        held = mine.token
        assert mine.release()
        assert not mine.release()
        assert theirs.acquire(blocking=False)
        assert theirs.token > held
        assert theirs.release()
        with pytest.raises(tooz.NotImplemented):
            mine.acquire(shared=True)
    finally:
        first.stop()
        second.stop()
