"""Names of the ZooKeeper backend: path segments, contender names ``<kind>-<nonce>-<seq>``,
serial-number arithmetic and queue order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from fencing_coord.errors import (
    BackendUnavailable,
)

#: Largest distance, in sequence numbers, tolerated between two live contenders.
DEFAULT_SEQUENCE_WINDOW: Final = 2**30
_SERIAL_HALF: Final = 2**31
_SERIAL_MOD: Final = 2**32
_NONCE_LENGTH: Final = 16
_LOCK_KIND: Final = "lock"
_CANDIDATE_KIND: Final = "candidate"
# What a loss reason calls a node of each kind, and what its parent belongs to.
_KIND_WORDS: Final = {_LOCK_KIND: ("lock node", "lock"), _CANDIDATE_KIND: ("candidate node", "election")}
# <kind>-<nonce>-<seq>: ZooKeeper appends the sequence number to the name we give.
_CONTENDER: Final = re.compile(r"([a-z]+)-([0-9a-f]{16})-(-?[0-9]{1,10})")




def _segment(text: str) -> str:
    """Escape ``text`` (an already validated name) into one ZooKeeper path segment.

    ZooKeeper refuses, besides what ``check_name`` refuses, U+FFF0..U+FFFF and every
    character outside the BMP (Java stores those as surrogates, which it refuses).
    ``%`` is escaped too, so the mapping is reversible with ``unquote``.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "%" or code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xF8FF or code >= 0xFFF0:
            out.append("".join(f"%{byte:02X}" for byte in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def _unsegment(segment: str) -> str:
    return unquote(segment)


def _candidate_data(identity: str, value: bytes) -> bytes:
    """A candidate node's data: ``b"%d:" % len(identity) + identity + value`` (identity
    UTF-8, its length in bytes in decimal), so any identity and any value round-trip."""
    raw = identity.encode("utf-8")
    return b"%d:%s%s" % (len(raw), raw, value)


def _parse_candidate(path: str, data: bytes) -> tuple[str, bytes]:
    """``(identity, value)`` from a candidate node's data; :class:`BackendUnavailable` when
    the node does not hold what :func:`_candidate_data` writes (someone else wrote it)."""
    head, colon, rest = data.partition(b":")
    if colon and head.isdigit() and int(head) <= len(rest):
        size = int(head)
        try:
            return rest[:size].decode("utf-8"), rest[size:]
        except UnicodeDecodeError:
            pass
    raise BackendUnavailable(f"{path} does not hold a fencing-coord candidate record ({data[:40]!r}...)")


def _serial_distance(a: int, b: int) -> int:
    """``a - b`` in 32-bit serial-number arithmetic: negative when ``a`` was issued
    before ``b``, correct across the counter's wrap while |a - b| < 2^31."""
    return (a - b + _SERIAL_HALF) % _SERIAL_MOD - _SERIAL_HALF


@dataclass(frozen=True)
class _Contender:
    """One child of a queue parent that follows our naming: ``<kind>-<nonce>-<seq>``."""

    node: str
    nonce: str
    seq: int


def _parse_contender(child: str, kind: str) -> _Contender | None:
    """Parse a child name; None for anything that is not one of our contenders. The
    sequence number is ZooKeeper's ``%010d`` of a signed 32-bit int (``-2147483648``
    after the wrap) and is parsed as an integer."""
    match = _CONTENDER.fullmatch(child)
    if match is None or match.group(1) != kind:
        return None
    seq = int(match.group(3))
    if not -_SERIAL_HALF <= seq < _SERIAL_HALF:
        return None
    return _Contender(child, match.group(2), seq)


def _queue_order(contenders: Sequence[_Contender]) -> list[_Contender]:
    """``contenders`` in queue order (serial arithmetic relative to any one of them;
    consistent while they all lie within the sequence window of each other)."""
    if not contenders:
        return []
    ref = contenders[0].seq
    return sorted(contenders, key=lambda c: _serial_distance(c.seq, ref))

