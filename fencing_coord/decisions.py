"""The gate's decisions without I/O, for both front ends: the blocking
:class:`~fencing_coord.FencedResource` and ``fencing_coord.aio.AsyncFencedResource``.

:class:`GateRules` holds what a resource is configured with (``strict``, the rollout's
mode and canary, ``require_token``, where metrics go) and, for each operation, a
generator of the store calls it needs (:class:`StoreCall`): it receives each call's
answer and returns the operation's result, having counted (metrics) and audited the
decision. The two front ends run the same generators, one with plain calls
(:func:`run_steps`), the other with ``await`` (:func:`arun_steps`); the rules (see
:mod:`fencing_coord.gate`) are stated once.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from . import audit, observability
from .audit import AuditNote, Decision, decision_of
from .errors import InvalidArgument, InvalidArgumentType, StaleTokenError
from .observability import Metrics
from .rollout import GateMode, Rollout
from .stores.base import FencedOutcome, check_store_token
from .validation import check_name

__all__ = [
    "GateRules",
    "Steps",
    "StoreCall",
    "WriteResult",
    "arun_steps",
    "check_operation",
    "check_value",
    "read_value",
    "result_of",
    "run_steps",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    """The outcome of :meth:`FencedResource.write <fencing_coord.FencedResource.write>`.

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


#: The keyword arguments of a call that has none (shared: never written to).
_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})


class StoreCall(NamedTuple):
    """One call of a store method: ``store.<method>(*args, **kwargs)``. (A tuple: one
    is made per operation, and a frozen dataclass costs several times more to make.)"""

    method: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = _NO_KWARGS


T = TypeVar("T")

#: What an operation's generator is: it yields store calls, receives their answers and
#: returns the operation's result.
Steps = Generator[StoreCall, Any, T]


def run_steps(steps: Steps[T], store: Any) -> T:
    """Run ``steps`` against a blocking store; the operation's result."""
    answer = None
    try:
        while True:
            call = steps.send(answer)
            answer = getattr(store, call.method)(*call.args, **call.kwargs)
    except StopIteration as done:
        result: T = done.value
        return result


async def arun_steps(steps: Steps[T], store: Any) -> T:
    """Run ``steps`` against an async store (its methods awaited); the result."""
    answer = None
    try:
        while True:
            call = steps.send(answer)
            answer = await getattr(store, call.method)(*call.args, **call.kwargs)
    except StopIteration as done:
        result: T = done.value
        return result


def check_operation(name: object, key: object, token: object) -> str:
    """Check a fenced operation's arguments (both front ends); the resource name."""
    checked = check_name(name, "resource name")
    check_name(key, "key")
    check_store_token(token)
    return checked


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


class GateRules:
    """The configuration and decisions of a fenced resource (see the module doc). The
    front end sets ``store`` (whose ``max_value_size`` and ``audit`` are read here)."""

    store: Any

    def _configure(self, strict: object, mode: GateMode | str, canary: Iterable[str], canary_fraction: float,
                   require_token: object, metrics: object) -> None:
        """Check and keep the settings; InvalidArgument/InvalidArgumentType if bad."""
        for what, flag in (("strict", strict), ("require_token", require_token)):
            if not isinstance(flag, bool):
                raise InvalidArgumentType(f"{what} must be a bool, not {type(flag).__name__}")
        if metrics is not None and not isinstance(metrics, Metrics):
            raise InvalidArgumentType(f"metrics must be a fencing_coord.observability.Metrics or None, not "
                                      f"{type(metrics).__name__}")
        self.strict: bool = bool(strict)
        self.require_token: bool = bool(require_token)
        self.metrics: Metrics | None = metrics
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

    # -- the operations, as steps ------------------------------------------------------------

    def _write_steps(self, name: object, key: str, value: object, token: int, holder: str | None) -> Steps[WriteResult]:
        checked = self._check(name, key, token, holder)
        data = self._value(value)
        rollout = self._rollout
        metrics = self._metrics()
        if rollout.mode is GateMode.ENFORCE and metrics is None and not self.store.audit and not audit.enabled():
            return result_of((yield StoreCall("fenced_write", (checked, key, data, token, self.strict))),
                             token, self.strict)
        if rollout.mode is GateMode.OFF:
            yield StoreCall("plain_write", (checked, key, data))
            self._decided(metrics, "write", checked, key, token, None, Decision.UNCHECKED, holder, rollout.mode)
            return WriteResult(True, None)
        shadow = not rollout.enforces(checked)
        note = AuditNote(rollout.mode, holder) if self.store.audit else None
        outcome = yield StoreCall("gated_write", (checked, key, data, token, self.strict),
                                  {"shadow": shadow, "note": note})
        self._decided(metrics, "write", checked, key, token, outcome.highest_before,
                      decision_of(outcome.accepted, shadow), holder, rollout.mode)
        result = result_of(outcome, token, self.strict)
        if shadow and not result.accepted:
            return WriteResult(True, result.highest_token, None, result.reason)
        return result

    def _write_without_token_steps(self, name: object, key: str, value: object,
                                   holder: str | None) -> Steps[WriteResult]:
        checked = self._check(name, key, 0, holder)
        data = self._value(value)
        rollout = self._rollout
        reason = f"no token: resource {checked!r} requires one (require_token=True)"
        if rollout.mode is GateMode.OFF:
            decision = Decision.UNCHECKED
        elif not self.require_token:
            decision = Decision.NO_TOKEN
        else:
            decision = Decision.REFUSED if rollout.enforces(checked) else Decision.WOULD_REFUSE
        if decision is not Decision.REFUSED:
            yield StoreCall("plain_write", (checked, key, data))
        metrics = self._metrics()
        if metrics is not None:
            metrics.write_without_token(checked)
        self._decided(metrics, "write", checked, key, None, None, decision, holder, rollout.mode)
        if decision is Decision.REFUSED:
            return WriteResult(False, None, reason)
        return WriteResult(True, None, None, reason if decision is Decision.WOULD_REFUSE else None)

    def _read_steps(self, name: object, key: str, token: int | None, holder: str | None) -> Steps[bytes | None]:
        if token is None:
            value: bytes | None = yield StoreCall("plain_read", (check_name(name, "resource name"),
                                                                 check_name(key, "key")))
            return value
        checked = self._check(name, key, token, holder)
        rollout = self._rollout
        metrics = self._metrics()
        if rollout.mode is GateMode.ENFORCE and metrics is None and not audit.enabled():
            return read_value((yield StoreCall("fenced_read", (checked, key, token, self.strict))), token, self.strict)
        if rollout.mode is GateMode.OFF:
            self._decided(metrics, "read", checked, key, token, None, Decision.UNCHECKED, holder, rollout.mode)
            value = yield StoreCall("plain_read", (checked, key))
            return value
        shadow = not rollout.enforces(checked)
        outcome = yield StoreCall("fenced_read", (checked, key, token, self.strict))
        self._decided(metrics, "read", checked, key, token, outcome.highest_before,
                      decision_of(outcome.accepted, shadow), holder, rollout.mode)
        if outcome.accepted:
            value = outcome.value
            return value
        if not shadow:
            read_value(outcome, token, self.strict)
        # Refused, then read: still correct, the token stays refused (see Store.gated_write).
        value = yield StoreCall("plain_read", (checked, key))
        return value

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _check(name: object, key: object, token: object, holder: object = None) -> str:
        checked = check_operation(name, key, token)
        if holder is not None and not isinstance(holder, str):
            raise InvalidArgumentType(f"holder must be a str or None, not {type(holder).__name__}")
        return checked

    def _value(self, value: object) -> bytes:
        return check_value(value, self.store.max_value_size)

    def _metrics(self) -> Metrics | None:
        return self.metrics if self.metrics is not None else observability._current

    def _decided(self, metrics: Metrics | None, operation: str, name: str, key: str, token: int | None,
                 highest: int | None, decision: Decision, holder: str | None, mode: GateMode) -> None:
        """Count and audit one decision."""
        if metrics is not None:
            metrics.gate_decision(name, mode, decision, token, highest)
        audit.log_decision(operation, name, key, token, highest, decision, mode, holder)
