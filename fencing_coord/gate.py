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

Rollout (seed 002; see :mod:`fencing_coord.rollout`): ``mode="enforce"`` (the default)
refuses as above; ``"shadow"`` decides, counts and audits but lets the write through
(the result is accepted, with ``shadow_refusal`` saying what enforce would have said)
while keeping the highest admitted token exactly as enforce does, so ``resource.mode =
"enforce"`` is safe at any moment; ``"canary"`` enforces for the resources named in
``canary`` or picked by ``canary_fraction`` and shadows the others; ``"off"`` checks and
records nothing. ``require_token=True`` refuses :meth:`FencedResource.write_without_token`
(counted either way in ``critical_write_without_token_total``).

Every decision is logged to ``fencing_coord.audit`` (:mod:`fencing_coord.audit`) and
counted by the installed :class:`~fencing_coord.observability.Metrics`, if any.

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

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .bound import BoundResource, fence_of
from .decisions import (
    GateRules,
    WriteResult,
    check_operation,
    check_value,
    read_value,
    result_of,
    run_steps,
)
from .errors import InvalidArgumentType
from .observability import Metrics
from .rollout import GateMode
from .stores.base import MAX_TOKEN, Store
from .validation import check_name

if TYPE_CHECKING:
    from .election import TermView
    from .interface import Grant

__all__ = [
    "MAX_TOKEN",
    "FencedResource",
    "GateMode",
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


def check_strict(store: object, kind: type, kind_name: str, strict: object) -> None:
    """Check a resource's store (a ``kind``, called ``kind_name``) and ``strict``."""
    if not isinstance(store, kind):
        raise InvalidArgumentType(f"store must be a {kind_name}, not {type(store).__name__}")
    if not isinstance(strict, bool):
        raise InvalidArgumentType(f"strict must be a bool, not {type(strict).__name__}")


class FencedResource(GateRules):
    """Resources in ``store`` that admit only the newest lock holder's token.

    Thread-safe (as safe as its store: across processes for SQLite and PostgreSQL).
    ``mode``, ``canary``, ``canary_fraction`` and ``require_token``: see the module doc
    (:meth:`set_mode` changes the mode later). ``metrics``: where this resource's
    decisions are counted (None: the process-wide one, see
    :func:`~fencing_coord.observability.set_metrics`). The decisions themselves are
    :class:`~fencing_coord.decisions.GateRules`', shared with the asyncio gate.
    """

    store: Store

    def __init__(self, store: Store, strict: bool = False, *, mode: GateMode | str = GateMode.ENFORCE,
                 canary: Iterable[str] = (), canary_fraction: float = 0.0, require_token: bool = False,
                 metrics: Metrics | None = None) -> None:
        if not isinstance(store, Store):
            raise InvalidArgumentType(f"store must be a fencing_coord.stores.Store, not {type(store).__name__}")
        self.store = store
        self._configure(strict, mode, canary, canary_fraction, require_token, metrics)

    def write(self, name: str, key: str, value: Bytes, *, token: int, holder: str | None = None) -> WriteResult:
        """Store ``value`` under ``name``/``key`` if ``token`` is admitted.

        Returns a :class:`WriteResult`; a refused write changed nothing. Where the gate
        does not enforce (see the module doc) the write is stored anyway and the result
        says what enforce would have said. ``holder``: who writes, for the audit record.
        Raises :class:`InvalidArgument`/:class:`InvalidArgumentType` for bad arguments and
        :class:`BackendUnavailable` when the store cannot be reached (the write may or
        may not have happened; reading ``highest_token`` tells).
        """
        return run_steps(self._write_steps(name, key, value, token, holder), self.store)

    def write_without_token(self, name: str, key: str, value: Bytes, *, holder: str | None = None) -> WriteResult:
        """A write that carries no token (a path not yet fenced): counted in
        ``critical_write_without_token_total`` and audited. With ``require_token=True``
        it is refused where the gate enforces (and let through, as a would-be refusal,
        where it shadows); otherwise, and in ``off`` mode, stored unfenced: the highest
        token is neither checked nor changed. Raises as :meth:`write`."""
        return run_steps(self._write_without_token_steps(name, key, value, holder), self.store)

    def read(self, name: str, key: str, *, token: int | None = None, holder: str | None = None) -> bytes | None:
        """Return the value under ``name``/``key``, or None if there is none.

        Without ``token``: a plain read. With ``token``: a fenced read, admitted like a
        write and raising the resource's highest token to ``token`` atomically with the
        read; refused, it raises :class:`StaleTokenError` and changes nothing. Where
        the gate does not enforce, a read that would be refused returns the value (and
        is counted and audited as a would-be refusal); ``off`` reads plainly.
        """
        return run_steps(self._read_steps(name, key, token, holder), self.store)

    def highest_token(self, name: str) -> int | None:
        """Return the highest token resource ``name`` has admitted, or None."""
        return self.store.highest_token(check_name(name, "resource name"))

    def bind(self, holder: Grant | TermView, resource: str | None = None) -> BoundResource:
        """Return this resource's ``resource`` (default: the grant's lock name, or the
        term's election name) with ``holder``'s token filled into every call."""
        token, name = fence_of(holder, resource)
        return BoundResource(self, token, name)


class UnfencedResource(FencedResource):
    """The unsafe baseline: the same API, arguments checked the same way, but every
    write is accepted and no token is checked or recorded (``highest_token`` in results
    is None). It exists to show, in tests and demos, what fencing prevents."""

    def write(self, name: str, key: str, value: Bytes, *, token: int, holder: str | None = None) -> WriteResult:
        """Store ``value`` unconditionally; always accepted."""
        name, data = self._check(name, key, token, holder), self._value(value)
        self.store.plain_write(name, key, data)
        return WriteResult(True, None)

    def write_without_token(self, name: str, key: str, value: Bytes, *, holder: str | None = None) -> WriteResult:
        """Store ``value`` unconditionally; always accepted, counted nowhere."""
        name, data = self._check(name, key, 0, holder), self._value(value)
        self.store.plain_write(name, key, data)
        return WriteResult(True, None)

    def read(self, name: str, key: str, *, token: int | None = None, holder: str | None = None) -> bytes | None:
        """Return the value or None; ``token`` is checked for type and then ignored."""
        name = check_name(name, "resource name") if token is None else self._check(name, key, token, holder)
        return self.store.plain_read(name, check_name(key, "key"))

    def highest_token(self, name: str) -> int | None:
        """Always None: an unfenced resource records no tokens."""
        check_name(name, "resource name")
        return None
