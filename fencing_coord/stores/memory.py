"""``MemoryStore``: resources in a dict, for tests, demos and single-process programs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..audit import AuditNote
from .base import FencedOutcome, Store, admits

__all__ = ["MemoryStore"]


@dataclass
class _Resource:
    highest: int | None = None
    values: dict[str, bytes] = field(default_factory=dict)


class MemoryStore(Store):
    """Keeps everything in this process's memory; lost when the process ends.

    Thread-safe: one mutex makes each check-and-write a single step. Not shared between
    processes (host it in a ``multiprocessing`` manager to share it, as the tests do).
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._resources: dict[str, _Resource] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._resources)} resources)"

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        with self._mutex:
            entry, before, admitted = self._admit(resource, token, strict)
            if admitted:
                entry.values[key] = value
            return FencedOutcome(admitted, before)

    def gated_write(self, resource: str, key: str, value: bytes, token: int, strict: bool, *, shadow: bool = False,
                    note: AuditNote | None = None) -> FencedOutcome:
        with self._mutex:
            entry, before, admitted = self._admit(resource, token, strict)
            if admitted or shadow:
                entry.values[key] = value
            return FencedOutcome(admitted, before)

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        with self._mutex:
            entry, before, admitted = self._admit(resource, token, strict)
            return FencedOutcome(admitted, before, entry.values.get(key) if admitted else None)

    def _admit(self, resource: str, token: int, strict: bool) -> tuple[_Resource, int | None, bool]:
        """Apply the admission rule (caller holds the mutex); raise the highest token."""
        entry = self._resources.setdefault(resource, _Resource())
        before = entry.highest
        if not admits(before, token, strict):
            return entry, before, False
        entry.highest = token if before is None else max(before, token)
        return entry, before, True

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        with self._mutex:
            self._resources.setdefault(resource, _Resource()).values[key] = value

    def plain_read(self, resource: str, key: str) -> bytes | None:
        with self._mutex:
            entry = self._resources.get(resource)
            return None if entry is None else entry.values.get(key)

    def highest_token(self, resource: str) -> int | None:
        with self._mutex:
            entry = self._resources.get(resource)
            return None if entry is None else entry.highest
