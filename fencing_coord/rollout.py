"""Gate modes: how a :class:`~fencing_coord.FencedResource` is rolled out.

Seed 002's migration, one step at a time: instrument, then ``shadow`` (decide, count,
audit, but let every write through), then ``canary`` (enforce for some resources), then
``enforce`` everywhere; ``off`` is the emergency override. A :class:`Rollout` is the
mode plus, for a canary, which resources it enforces; it is immutable, and a resource
swaps it whole, so a thread never sees half of a change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from .errors import InvalidArgument, InvalidArgumentType
from .validation import check_name

__all__ = ["GateMode", "Rollout", "canary_point"]


class GateMode(StrEnum):
    """What the gate does with a stale token (or a missing one where one is required)."""

    #: Refuse it (the default).
    ENFORCE = "enforce"
    #: Let the write through, but decide, count and audit as ``enforce`` would, and keep
    #: the highest admitted token exactly as ``enforce`` keeps it.
    SHADOW = "shadow"
    #: ``enforce`` for the chosen resources, ``shadow`` for the others.
    CANARY = "canary"
    #: Check nothing, record nothing, let everything through (emergency override).
    OFF = "off"


def canary_point(name: str) -> float:
    """Where ``name`` falls in ``[0, 1)``: a hash of its UTF-8 bytes, the same in every
    process and Python version (unlike ``hash()``). A canary fraction ``f`` enforces the
    names whose point is below ``f``, so raising ``f`` only ever adds names."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Rollout:
    """A gate mode; for ``canary``, the resources it enforces: those named in
    ``canary``, and the fraction ``canary_fraction`` of all names chosen by
    :func:`canary_point`. Build one with :meth:`of`, which checks the arguments."""

    mode: GateMode = GateMode.ENFORCE
    canary: frozenset[str] = frozenset()
    canary_fraction: float = 0.0

    @classmethod
    def of(cls, mode: GateMode | str, canary: Iterable[str] = (), canary_fraction: float = 0.0) -> Rollout:
        """Check and build. Raises :class:`InvalidArgument` for an unknown mode, a
        fraction outside 0..1, canary settings with another mode, or a canary mode that
        enforces nothing; :class:`InvalidArgumentType` for wrong types."""
        if not isinstance(mode, str):
            raise InvalidArgumentType(f"mode must be a str, not {type(mode).__name__}")
        try:
            checked = GateMode(mode)
        except ValueError:
            choices = ", ".join(m.value for m in GateMode)
            raise InvalidArgument(f"unknown gate mode {mode!r}; choose one of {choices}") from None
        if isinstance(canary, str) or not isinstance(canary, Iterable):
            raise InvalidArgumentType("canary must be a collection of resource names, not a "
                                      f"{type(canary).__name__}")
        names = frozenset(check_name(name, "canary resource name") for name in canary)
        if isinstance(canary_fraction, bool) or not isinstance(canary_fraction, int | float):
            raise InvalidArgumentType(f"canary_fraction must be a number, not {type(canary_fraction).__name__}")
        if not 0.0 <= canary_fraction <= 1.0:
            raise InvalidArgument(f"canary_fraction must be between 0 and 1, got {canary_fraction}")
        if checked is GateMode.CANARY and not names and canary_fraction == 0:
            raise InvalidArgument("canary mode needs canary resource names or a canary_fraction above 0")
        if checked is not GateMode.CANARY and (names or canary_fraction):
            raise InvalidArgument(f"canary and canary_fraction apply to canary mode only, not {checked.value}")
        return cls(checked, names, float(canary_fraction))

    def enforces(self, name: str) -> bool:
        """True when a stale token on resource ``name`` is refused under this rollout."""
        mode = self.mode
        if mode is GateMode.ENFORCE:
            return True
        if mode is not GateMode.CANARY:
            return False
        return name in self.canary or canary_point(name) < self.canary_fraction
