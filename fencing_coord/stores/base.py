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

Shadow mode (see :class:`~fencing_coord.FencedResource`) asks a store for one more
thing, :meth:`Store.gated_write` with ``shadow=True``: admitted, the write and the raise
of the highest token are one atomic step as above; refused, the value is stored anyway
and the highest token is left as it is. So the bookkeeping that enforce mode relies on
is exact whatever the mode, and switching from shadow to enforce is safe at any moment.
The base class implements it from the abstract methods (a refused ``fenced_write``, then
``plain_write``: correct for every store, since a refused token stays refused: the
highest token only grows); a store may do it in one step, as the stores here do.

To add a store (S3 conditional writes, Redis, another database), subclass :class:`Store`
and implement its five abstract methods; ``fencing_coord.testing`` is not needed, but
``tests/gate`` shows the scenarios a store should pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, NamedTuple, Self

from ..audit import AuditNote, AuditRow
from ..errors import InvalidArgument, NotSupported
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
    #: True when this store writes the decision of each :meth:`gated_write` given a note
    #: to an audit table, in the decision's transaction (SQL stores opened with audit=True).
    audit: bool = False

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

    def gated_write(self, resource: str, key: str, value: bytes, token: int, strict: bool, *, shadow: bool = False,
                    note: AuditNote | None = None) -> FencedOutcome:
        """A fenced write as the gate's mode asks for it.

        ``shadow=False``: exactly :meth:`fenced_write`. ``shadow=True``: if ``token`` is
        admitted, store ``value`` and raise the highest token atomically (as
        :meth:`fenced_write`); if not, store ``value`` and leave the highest token as it
        is. Either way ``accepted`` says whether the token was admitted. ``note``: the
        gate's side of the audit record, written with the decision by a store whose
        :attr:`audit` is True (ignored by the others).
        """
        outcome = self.fenced_write(resource, key, value, token, strict)
        if shadow and not outcome.accepted:
            # Not one step, and it needs not be: the token was refused against the
            # highest token then, and the highest token only grows, so it would be
            # refused now too; storing the value now is what one step would have done.
            self.plain_write(resource, key, value)
        return outcome

    def recent_decisions(self, resource: str, limit: int = 20) -> list[AuditRow]:
        """The latest ``limit`` decisions on ``resource`` from the audit table, newest
        first. Raises :class:`NotSupported` for a store that keeps no audit table."""
        raise NotSupported(f"{self!r} keeps no audit table (open a SQL store with audit=True)")

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
