"""The interface a store implements to back a :class:`~fencing_coord.FencedResource`.

A store keeps, per resource name, a map of keys to byte values and the highest fencing
token it has admitted. Its one obligation is atomicity: the token check and the write
(or, for a fenced read, the check, the raise of the highest token and the read) are a
single step of the store (one transaction, one conditional update, one compare-and-set),
so no stale write can slip in between, from any thread or process.

Admission rule, shared by every store (``admits``): with ``highest`` the resource's
highest admitted token (None before the first), a token ``t`` is admitted when
``highest is None or t > highest or (t == highest and not strict)``. On admission the
resource's highest token becomes ``max(highest, t)``.

Arguments reach a store already validated by the resource: names and keys pass
:func:`~fencing_coord.validation.check_name`, values are ``bytes`` of at most
``max_value_size``, tokens are ints in ``0 .. 2**63 - 1``.

To add a store (S3 conditional writes, Redis, another database), subclass :class:`Store`
and implement its five abstract methods; ``fencing_coord.testing`` is not needed, but
``tests/gate`` shows the scenarios a store should pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, NamedTuple, Self

from ..errors import InvalidArgument
from ..validation import check_token

__all__ = ["MAX_TOKEN", "MAX_VALUE_SIZE", "FencedOutcome", "Store", "admits", "check_store_token"]

#: Largest value a resource accepts, in bytes (1 MiB). A store may lower it.
MAX_VALUE_SIZE = 1 << 20

#: Largest token a resource accepts: tokens are stored as signed 64-bit integers, the
#: width of etcd revisions and of SQL BIGINT.
MAX_TOKEN = 2**63 - 1


def check_store_token(value: object) -> int:
    """Return ``value`` when it is a token a store can hold: an ``int`` (not ``bool``) in
    ``0 .. MAX_TOKEN``; else raise :class:`InvalidArgumentType`/:class:`InvalidArgument`."""
    if type(value) is int and 0 <= value <= MAX_TOKEN:  # the usual case, checked once per call
        return value
    token = check_token(value)
    if token > MAX_TOKEN:
        raise InvalidArgument(f"token {token} does not fit in 64 bits (the limit is {MAX_TOKEN})")
    return token


def admits(highest: int | None, token: int, strict: bool) -> bool:
    """The admission rule above; stores that check in application code call this."""
    return highest is None or token > highest or (token == highest and not strict)


class FencedOutcome(NamedTuple):
    """What a store reports for one fenced operation (a named tuple: one is built per
    operation, and a tuple is the cheapest immutable record to build).

    ``accepted``: the token was admitted (and the write or read happened);
    ``highest_before``: the resource's highest admitted token before this operation
    (when refused: the highest token that refused it, or a later, larger one);
    ``value``: for a read, the value (None if absent or refused).
    """

    accepted: bool
    highest_before: int | None
    value: bytes | None = None


class Store(ABC):
    """Storage behind a fenced resource.

    Implementations are safe to share between the threads of a process; those whose
    docstring says so are safe across processes too (each process opens its own store
    object on the same file or database). Usable as a context manager (closes on exit).
    """

    #: Largest value this store can hold; the resource refuses larger ones up front.
    max_value_size: ClassVar[int] = MAX_VALUE_SIZE

    @abstractmethod
    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        """Atomically: if ``token`` is admitted, store ``value`` and raise the highest
        token; otherwise change nothing.

        The outcome is reported only when known: accepted or refused as the store
        decided it. When the store cannot tell (the reply to the write or to its commit
        was lost) it raises :class:`~fencing_coord.errors.BackendUnavailable` whose
        message says "outcome unknown": the write may or may not have been applied. The
        same holds for a fenced read that raises the highest token."""

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
        """Return the highest token ``resource`` has admitted, or None."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has none."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
