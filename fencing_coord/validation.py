"""Argument checks shared by the backends and the gate, so every entry point refuses the
same bad input with the same message."""

from __future__ import annotations

import math

from .errors import InvalidArgument, InvalidArgumentType

__all__ = [
    "INT32_MILLISECONDS",
    "MAX_NAME_LENGTH",
    "MAX_SECONDS",
    "check_name",
    "check_positive_seconds",
    "check_timeout",
    "check_token",
]

#: Longest lock, election, resource or key name, in characters.
MAX_NAME_LENGTH = 200

#: The longest duration, in seconds (365 days). A ``ttl`` or per-call ``timeout`` option
#: above it is refused (a mistake, and too large for some services' clocks); a wait
#: (``acquire``/``campaign`` timeout) above it means "wait forever", as None does.
MAX_SECONDS = 365 * 24 * 3600.0

#: The longest duration a signed 32-bit count of milliseconds holds, (2**31 - 1) ms in
#: seconds: ZooKeeper's session timeout is one. A backend passes it as ``max_seconds``.
INT32_MILLISECONDS = (2**31 - 1) / 1000


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
    if value.isascii() and value.isprintable():
        return value  # no printable ASCII character is in a category refused below
    # Imported here: loading the module costs about a millisecond, and most names are
    # printable ASCII (issue 13: a process's first grant).
    import unicodedata

    for ch in value:
        # Control, surrogate and private-use characters are refused by ZooKeeper paths.
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise InvalidArgument(f"{what} {value!r} contains the unprintable character {ch!r}")
    return value


def check_timeout(value: object, what: str = "timeout") -> float | None:
    """Return ``value`` as a float number of seconds, or None for "wait forever".

    Accepts None or a real number >= 0; ``bool`` is refused because ``timeout=True`` is
    a bug, not one second, and so are NaN and infinity (write None). Any finite number
    above :data:`MAX_SECONDS` also returns None: every backend then waits without a
    deadline instead of overflowing its clock arithmetic, so a huge timeout means the
    same everywhere.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and MAX_SECONDS < value < math.inf:
        return None
    return check_positive_seconds(value, what, allow_zero=True)


def check_positive_seconds(value: object, what: str, *, allow_zero: bool = False,
                           max_seconds: float = MAX_SECONDS) -> float:
    """Return ``value`` as float seconds: the one check of durations (ttl, timeouts).

    ``value`` must be an ``int`` or ``float`` (not ``bool``), finite, > 0 (>= 0 with
    ``allow_zero``) and at most ``max_seconds`` (a backend whose service counts in
    smaller units passes its own bound, e.g. :data:`INT32_MILLISECONDS`). Raises
    :class:`InvalidArgumentType` or :class:`InvalidArgument` naming the rule; never
    ``OverflowError``, however large an ``int`` is.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentType(f"{what} must be a number of seconds, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(f"{what} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidArgument(f"{what} must be {bound} seconds, got {_shown(value)}")
    if value > max_seconds:  # int against float compares exactly, with no conversion
        raise InvalidArgument(f"{what} must be at most {max_seconds:.15g} seconds, got {_shown(value)}")
    return float(value)


def _shown(value: int | float) -> str:
    """``repr(value)``, except for an int too long to print or to turn into a float."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {int(value.bit_length() * math.log10(2)) + 1} digits"
    return repr(value)


def check_token(value: object) -> int:
    """Return ``value`` when it is a fencing token: an ``int`` >= 0 that is not a ``bool``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentType(f"token must be an int, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgument(f"token must be >= 0, got {value}")
    return value
