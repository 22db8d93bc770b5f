"""The interface a store implements to back a :class:`~fencing_coord.FencedResource`.

A store keeps, per resource name, a map of keys to byte values and the highest fencing
token it has accepted. Its one obligation is atomicity: the token check and the write
(or, for a fenced read, the check, the raise of the highest token and the read) are a
single step of the store (one transaction, one conditional update, one compare-and-set),
so no stale write can slip in between, from any thread or process.

Admission rule, shared by every store (``admits``): with ``highest`` the resource's
highest accepted token (None before the first), a token ``t`` is admitted when
``highest is None or t > highest or (t == highest and not strict)``. On admission the
resource's highest token becomes ``max(highest, t)``.

Arguments reach a store already validated by the resource (names, bytes, int tokens).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["FencedOutcome", "Store", "admits"]


def admits(highest: int | None, token: int, strict: bool) -> bool:
    """The admission rule above, for stores that check in application code under a lock."""
    return highest is None or token > highest or (token == highest and not strict)


@dataclass(frozen=True)
class FencedOutcome:
    """What a store reports for one fenced operation.

    ``accepted``: the token was admitted (and the write or read happened);
    ``highest_before``: the resource's highest accepted token before this operation;
    ``value``: for a read, the value (None if absent or refused).
    """

    accepted: bool
    highest_before: int | None
    value: bytes | None = None


class Store(ABC):
    """Storage behind a fenced resource. Implementations must be safe to share between
    threads; those documented as such are safe across processes too."""

    @abstractmethod
    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        """Atomically: if ``token`` is admitted, store ``value`` and raise the highest
        token; otherwise change nothing."""

    @abstractmethod
    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        """Atomically: if ``token`` is admitted, raise the highest token to it and
        return the value; otherwise change nothing."""

    @abstractmethod
    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        """Store ``value`` unconditionally (the unsafe baseline); tokens untouched."""

    @abstractmethod
    def plain_read(self, resource: str, key: str) -> bytes | None:
        """Return the value, or None; no token involved."""

    @abstractmethod
    def highest_token(self, resource: str) -> int | None:
        """Return the highest token ``resource`` has accepted, or None."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has none."""
