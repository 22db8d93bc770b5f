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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import audit, observability
from .audit import AuditNote, Decision, decision_of
from .bound import BoundResource, fence_of
from .errors import InvalidArgument, InvalidArgumentType, StaleTokenError
from .observability import Metrics
from .rollout import GateMode, Rollout
from .stores.base import MAX_TOKEN, FencedOutcome, Store, check_store_token
from .validation import check_name

if TYPE_CHECKING:
    from .election import Term
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


@dataclass(frozen=True)
class WriteResult:
    """The outcome of :meth:`FencedResource.write`.

    ``accepted``: the value was stored. ``highest_token``: the highest token the
    resource had admitted before this write (None if none; when refused, the token that
    refused it or a later, larger one). ``reason``: None, or why it was refused
    (``"stale token 7 < 9"``). ``shadow_refusal``: for a write let through because the
    gate does not enforce on this resource (shadow mode, a canary's other resources),
    why enforce mode would have refused it; else None.
    """

    accepted: bool
    highest_token: int | None
    reason: str | None = None
    shadow_refusal: str | None = None

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
    ``mode``, ``canary``, ``canary_fraction`` and ``require_token``: see the module doc
    (:meth:`set_mode` changes the mode later). ``metrics``: where this resource's
    decisions are counted (None: the process-wide one, see
    :func:`~fencing_coord.observability.set_metrics`).
    """

    def __init__(self, store: Store, strict: bool = False, *, mode: GateMode | str = GateMode.ENFORCE,
                 canary: Iterable[str] = (), canary_fraction: float = 0.0, require_token: bool = False,
                 metrics: Metrics | None = None) -> None:
        if not isinstance(store, Store):
            raise InvalidArgumentType(f"store must be a fencing_coord.stores.Store, not {type(store).__name__}")
        for what, flag in (("strict", strict), ("require_token", require_token)):
            if not isinstance(flag, bool):
                raise InvalidArgumentType(f"{what} must be a bool, not {type(flag).__name__}")
        if metrics is not None and not isinstance(metrics, Metrics):
            raise InvalidArgumentType(f"metrics must be a fencing_coord.observability.Metrics or None, not "
                                      f"{type(metrics).__name__}")
        self.store = store
        self.strict = strict
        self.require_token = require_token
        self.metrics = metrics
        self._rollout = Rollout.of(mode, canary, canary_fraction)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r}, strict={self.strict}, mode={self.mode.value!r})"

    @property
    def mode(self) -> GateMode:
        """The gate's mode; assigning one is :meth:`set_mode` with no canary settings."""
        return self._rollout.mode

    @mode.setter
    def mode(self, mode: GateMode | str) -> None:
        self.set_mode(mode)

    def set_mode(self, mode: GateMode | str, *, canary: Iterable[str] = (), canary_fraction: float = 0.0) -> None:
        """Switch to ``mode`` (with its canary settings) for every later operation; see
        :meth:`Rollout.of <fencing_coord.rollout.Rollout.of>` for what it raises."""
        self._rollout = Rollout.of(mode, canary, canary_fraction)

    def enforces(self, name: str) -> bool:
        """True when a stale token on resource ``name`` is refused in the current mode."""
        return self._rollout.enforces(check_name(name, "resource name"))

    def write(self, name: str, key: str, value: Bytes, *, token: int, holder: str | None = None) -> WriteResult:
        """Store ``value`` under ``name``/``key`` if ``token`` is admitted.

        Returns a :class:`WriteResult`; a refused write changed nothing. Where the gate
        does not enforce (see the module doc) the write is stored anyway and the result
        says what enforce would have said. ``holder``: who writes, for the audit record.
        Raises :class:`InvalidArgument`/:class:`InvalidArgumentType` for bad arguments and
        :class:`BackendUnavailable` when the store cannot be reached (the write may or
        may not have happened; reading ``highest_token`` tells).
        """
        name = self._check(name, key, token, holder)
        data = self._value(value)
        rollout = self._rollout
        metrics = self.metrics if self.metrics is not None else observability._current
        if rollout.mode is GateMode.ENFORCE and metrics is None and not self.store.audit and not audit.enabled():
            return self._result(self.store.fenced_write(name, key, data, token, self.strict), token)
        if rollout.mode is GateMode.OFF:
            self.store.plain_write(name, key, data)
            self._decided(metrics, "write", name, key, token, None, Decision.UNCHECKED, holder, rollout.mode)
            return WriteResult(True, None)
        shadow = not rollout.enforces(name)
        note = AuditNote(rollout.mode, holder) if self.store.audit else None
        outcome = self.store.gated_write(name, key, data, token, self.strict, shadow=shadow, note=note)
        self._decided(metrics, "write", name, key, token, outcome.highest_before,
                      decision_of(outcome.accepted, shadow), holder, rollout.mode)
        result = self._result(outcome, token)
        if shadow and not result.accepted:
            return WriteResult(True, result.highest_token, None, result.reason)
        return result

    def write_without_token(self, name: str, key: str, value: Bytes, *, holder: str | None = None) -> WriteResult:
        """A write that carries no token (a path not yet fenced): counted in
        ``critical_write_without_token_total`` and audited. With ``require_token=True``
        it is refused where the gate enforces (and let through, as a would-be refusal,
        where it shadows); otherwise, and in ``off`` mode, stored unfenced: the highest
        token is neither checked nor changed. Raises as :meth:`write`."""
        name = self._check(name, key, 0, holder)
        data = self._value(value)
        rollout = self._rollout
        reason = f"no token: resource {name!r} requires one (require_token=True)"
        if rollout.mode is GateMode.OFF:
            decision = Decision.UNCHECKED
        elif not self.require_token:
            decision = Decision.NO_TOKEN
        else:
            decision = Decision.REFUSED if rollout.enforces(name) else Decision.WOULD_REFUSE
        if decision is not Decision.REFUSED:
            self.store.plain_write(name, key, data)
        metrics = self.metrics if self.metrics is not None else observability._current
        if metrics is not None:
            metrics.write_without_token(name)
        self._decided(metrics, "write", name, key, None, None, decision, holder, rollout.mode)
        if decision is Decision.REFUSED:
            return WriteResult(False, None, reason)
        return WriteResult(True, None, None, reason if decision is Decision.WOULD_REFUSE else None)

    def read(self, name: str, key: str, *, token: int | None = None, holder: str | None = None) -> bytes | None:
        """Return the value under ``name``/``key``, or None if there is none.

        Without ``token``: a plain read. With ``token``: a fenced read, admitted like a
        write and raising the resource's highest token to ``token`` atomically with the
        read; refused, it raises :class:`StaleTokenError` and changes nothing. Where
        the gate does not enforce, a read that would be refused returns the value (and
        is counted and audited as a would-be refusal); ``off`` reads plainly.
        """
        if token is None:
            return self.store.plain_read(check_name(name, "resource name"), check_name(key, "key"))
        name = self._check(name, key, token, holder)
        rollout = self._rollout
        metrics = self.metrics if self.metrics is not None else observability._current
        if rollout.mode is GateMode.ENFORCE and metrics is None and not audit.enabled():
            outcome = self.store.fenced_read(name, key, token, self.strict)
            if not outcome.accepted:
                self._result(outcome, token).raise_for_status()
            return outcome.value
        if rollout.mode is GateMode.OFF:
            self._decided(metrics, "read", name, key, token, None, Decision.UNCHECKED, holder, rollout.mode)
            return self.store.plain_read(name, key)
        shadow = not rollout.enforces(name)
        outcome = self.store.fenced_read(name, key, token, self.strict)
        self._decided(metrics, "read", name, key, token, outcome.highest_before,
                      decision_of(outcome.accepted, shadow), holder, rollout.mode)
        if outcome.accepted:
            return outcome.value
        if not shadow:
            self._result(outcome, token).raise_for_status()
        # Refused, then read: still correct, the token stays refused (see Store.gated_write).
        return self.store.plain_read(name, key)

    def highest_token(self, name: str) -> int | None:
        """Return the highest token resource ``name`` has admitted, or None."""
        return self.store.highest_token(check_name(name, "resource name"))

    def bind(self, holder: Grant | Term, resource: str | None = None) -> BoundResource:
        """Return this resource's ``resource`` (default: the grant's lock name, or the
        term's election name) with ``holder``'s token filled into every call."""
        token, name = fence_of(holder, resource)
        return BoundResource(self, token, name)

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _check(name: object, key: object, token: object, holder: object = None) -> str:
        checked = check_operation(name, key, token)
        if holder is not None and not isinstance(holder, str):
            raise InvalidArgumentType(f"holder must be a str or None, not {type(holder).__name__}")
        return checked

    def _value(self, value: object) -> bytes:
        return check_value(value, self.store.max_value_size)

    def _decided(self, metrics: Metrics | None, operation: str, name: str, key: str, token: int | None,
                 highest: int | None, decision: Decision, holder: str | None, mode: GateMode) -> None:
        """Count and audit one decision."""
        if metrics is not None:
            metrics.gate_decision(name, mode, decision, token, highest)
        audit.log_decision(operation, name, key, token, highest, decision, mode, holder)

    def _result(self, outcome: FencedOutcome, token: int) -> WriteResult:
        return result_of(outcome, token, self.strict)


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
