"""A recorder of the calls made to one method of one object, for tests that count what the
code under test asks of a library (timers of the loop, hand-overs to kazoo's threads)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["recorded"]


@contextlib.contextmanager
def recorded(owner: Any, method: str) -> Iterator[list[Any]]:
    """While open, every call of ``owner.<method>`` goes through as before and its first
    argument is appended to the list yielded (``call_at``: the time; a queue's ``put``:
    the item). The instance attribute that does this is deleted on exit, even when the
    test fails: ``owner``'s own method is in place again."""
    calls: list[Any] = []
    real = getattr(owner, method)

    def record(first: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(first)
        return real(first, *args, **kwargs)

    setattr(owner, method, record)
    try:
        yield calls
    finally:
        delattr(owner, method)
