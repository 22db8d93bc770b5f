"""The gate: a resource that refuses writes (and fenced reads) carrying a stale token.

    store = fc.stores.SQLiteStore("state.db")
    resource = fc.FencedResource(store)
    resource.write("orders", "k1", b"v", token=grant.token).raise_for_status()
    value = resource.read("orders", "k1", token=grant.token)   # fenced read

Rules (for one resource name; every key of it shares its highest token):

- A write whose token is below the highest admitted token is refused and changes
  nothing. An equal token is admitted (one grant may write many keys and many times);
  with ``strict=True`` it is refused too, so every admitted operation needs a new,
  larger token (a fenced read then consumes its token: strict mode suits one write per
  grant, not read-modify-write under one grant).
- A fenced read (``read(..., token=t)``) is admitted by the same rule; admitted, it
  raises the highest token to ``t`` atomically with the read, so a holder that read
  under an older token can no longer write what it computed from that read. Refused, it
  raises :class:`StaleTokenError` (a value is returned, not a result object, and a
  refused read must not look like an absent key).
- The check and the write are one atomic step of the store.

Arguments: names and keys are non-empty ``str`` (see
:func:`~fencing_coord.validation.check_name`), values are bytes-like (``bytes``,
``bytearray``, ``memoryview``; stored and returned as ``bytes``) of at most
:data:`~fencing_coord.stores.base.MAX_VALUE_SIZE` bytes (1 MiB, or the store's lower
``max_value_size``), tokens are ``int`` in ``0 .. 2**63 - 1`` (not ``bool``). Anything
else raises :class:`InvalidArgumentType` (a ``TypeError``) or :class:`InvalidArgument`
(a ``ValueError``) before the store is touched. Store failures raise
:class:`BackendUnavailable` (retryable) or :class:`ConfigurationError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidArgument, InvalidArgumentType, StaleTokenError
from .stores.base import MAX_TOKEN, FencedOutcome, Store, check_store_token
from .validation import check_name

__all__ = [
    "MAX_TOKEN",
    "FencedResource",
    "UnfencedResource",
    "WriteResult",
    "check_operation",
    "check_strict",
    "check_value",
    "read_value",
    "result_of",
]

#: What a value may be given as; it is stored and returned as ``bytes``.
Bytes = bytes | bytearray | memoryview


@dataclass(frozen=True)
class WriteResult:
    """The outcome of :meth:`FencedResource.write`.

    ``accepted``: the value was stored. ``highest_token``: the highest token the
    resource had admitted before this write (None if none; when refused, the token that
    refused it or a later, larger one). ``reason``: None, or why it was refused
    (``"stale token 7 < 9"``).
    """

    accepted: bool
    highest_token: int | None
    reason: str | None = None

    def raise_for_status(self) -> WriteResult:
        """Return ``self`` if accepted; raise :class:`StaleTokenError` if refused."""
        if not self.accepted:
            raise StaleTokenError(self.reason or "write refused")
        return self


def check_operation(name: object, key: object, token: object) -> str:
    """Check a fenced operation's arguments (both front ends); the resource name."""
    checked = check_name(name, "resource name")
    check_name(key, "key")
    check_store_token(token)
    return checked


def check_strict(store: object, kind: type, kind_name: str, strict: object) -> None:
    """Check a resource's store (a ``kind``, called ``kind_name``) and ``strict``."""
    if not isinstance(store, kind):
        raise InvalidArgumentType(f"store must be a {kind_name}, not {type(store).__name__}")
    if not isinstance(strict, bool):
        raise InvalidArgumentType(f"strict must be a bool, not {type(strict).__name__}")


def check_value(value: object, limit: int) -> bytes:
    """``value`` as bytes, when it is bytes-like and at most ``limit`` bytes."""
    if not isinstance(value, bytes | bytearray | memoryview):
        hint = "; encode it first, e.g. value.encode()" if isinstance(value, str) else ""
        raise InvalidArgumentType(f"value must be bytes, not {type(value).__name__}{hint}")
    data = bytes(value)
    if len(data) > limit:
        raise InvalidArgument(f"value is {len(data)} bytes; the limit is {limit} bytes")
    return data


def result_of(outcome: FencedOutcome, token: int, strict: bool) -> WriteResult:
    """The :class:`WriteResult` of a store's outcome for ``token``."""
    if outcome.accepted:
        return WriteResult(True, outcome.highest_before)
    highest = outcome.highest_before
    relation = "<=" if strict and token == highest else "<"
    return WriteResult(False, highest, f"stale token {token} {relation} {highest}")


def read_value(outcome: FencedOutcome, token: int, strict: bool) -> bytes | None:
    """A fenced read's value; StaleTokenError when it was refused."""
    if not outcome.accepted:
        result_of(outcome, token, strict).raise_for_status()
    return outcome.value


class FencedResource:
    """Resources in ``store`` that admit only the newest lock holder's token.

    Thread-safe (as safe as its store: across processes for SQLite and PostgreSQL).
    """

    def __init__(self, store: Store, strict: bool = False) -> None:
        check_strict(store, Store, "fencing_coord.stores.Store", strict)
        self.store = store
        self.strict = strict

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r}, strict={self.strict})"

    def write(self, name: str, key: str, value: Bytes, *, token: int) -> WriteResult:
        """Store ``value`` under ``name``/``key`` if ``token`` is admitted.

        Returns a :class:`WriteResult`; a refused write changed nothing. Raises
        :class:`InvalidArgument`/:class:`InvalidArgumentType` for bad arguments and
        :class:`BackendUnavailable` when the store cannot be reached (the write may or
        may not have happened; reading ``highest_token`` tells).
        """
        name = self._check(name, key, token)
        outcome = self.store.fenced_write(name, key, self._value(value), token, self.strict)
        return self._result(outcome, token)

    def read(self, name: str, key: str, *, token: int | None = None) -> bytes | None:
        """Return the value under ``name``/``key``, or None if there is none.

        Without ``token``: a plain read. With ``token``: a fenced read, admitted like a
        write and raising the resource's highest token to ``token`` atomically with the
        read; refused, it raises :class:`StaleTokenError` and changes nothing.
        """
        if token is None:
            return self.store.plain_read(check_name(name, "resource name"), check_name(key, "key"))
        name = self._check(name, key, token)
        return read_value(self.store.fenced_read(name, key, token, self.strict), token, self.strict)

    def highest_token(self, name: str) -> int | None:
        """Return the highest token resource ``name`` has admitted, or None."""
        return self.store.highest_token(check_name(name, "resource name"))

    # -- helpers ----------------------------------------------------------------------

    _check = staticmethod(check_operation)

    def _value(self, value: object) -> bytes:
        return check_value(value, self.store.max_value_size)

    def _result(self, outcome: FencedOutcome, token: int) -> WriteResult:
        return result_of(outcome, token, self.strict)


class UnfencedResource(FencedResource):
    """The unsafe baseline: the same API, arguments checked the same way, but every
    write is accepted and no token is checked or recorded (``highest_token`` in results
    is None). It exists to show, in tests and demos, what fencing prevents."""

    def write(self, name: str, key: str, value: Bytes, *, token: int) -> WriteResult:
        """Store ``value`` unconditionally; always accepted."""
        name, data = self._check(name, key, token), self._value(value)
        self.store.plain_write(name, key, data)
        return WriteResult(True, None)

    def read(self, name: str, key: str, *, token: int | None = None) -> bytes | None:
        """Return the value or None; ``token`` is checked for type and then ignored."""
        name = check_name(name, "resource name") if token is None else self._check(name, key, token)
        return self.store.plain_read(name, check_name(key, "key"))

    def highest_token(self, name: str) -> int | None:
        """Always None: an unfenced resource records no tokens."""
        check_name(name, "resource name")
        return None
