"""Argument checks shared by the backends and the gate, so every entry point refuses the
same bad input with the same message."""

from __future__ import annotations

import math
import unicodedata

from .errors import InvalidArgument, InvalidArgumentType

__all__ = [
    "MAX_NAME_LENGTH",
    "check_name",
    "check_positive_seconds",
    "check_timeout",
    "check_token",
]

#: Longest lock, election, resource or key name, in characters.
MAX_NAME_LENGTH = 200


def check_name(value: object, what: str = "name") -> str:
    """Return ``value`` when it is a usable lock/election/resource name or key.

    A name is a non-empty ``str`` of at most :data:`MAX_NAME_LENGTH` printable
    characters without ``/``, and not ``.`` or ``..``: it has to become one path
    segment in etcd and in ZooKeeper. Raises :class:`InvalidArgumentType` or
    :class:`InvalidArgument` naming the rule that was broken.
    """
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{what} must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{what} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}")
    if "/" in value:
        raise InvalidArgument(f"{what} {value!r} contains '/'; use another separator such as ':'")
    if value in (".", ".."):
        raise InvalidArgument(f"{what} may not be {value!r}")
    for ch in value:
        # Control, surrogate and private-use characters are refused by ZooKeeper paths.
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise InvalidArgument(f"{what} {value!r} contains the unprintable character {ch!r}")
    return value


def check_timeout(value: object, what: str = "timeout") -> float | None:
    """Return ``value`` as a float number of seconds, or None for "wait forever".

    Accepts None or a finite real number >= 0; ``bool`` is refused because
    ``timeout=True`` is a bug, not one second.
    """
    if value is None:
        return None
    return check_positive_seconds(value, what, allow_zero=True)


def check_positive_seconds(value: object, what: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float seconds; it must be a finite real number > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentType(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise InvalidArgument(f"{what} must be finite, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgument(f"{what} must be {bound} seconds, got {value!r}")
    return seconds


def check_token(value: object) -> int:
    """Return ``value`` when it is a fencing token: an ``int`` >= 0 that is not a ``bool``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentType(f"token must be an int, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgument(f"token must be >= 0, got {value}")
    return value
