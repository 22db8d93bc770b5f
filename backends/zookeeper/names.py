"""Names in the ZooKeeper backend's tree: path segments, contender names and queue order.

Lock and election names are escaped into one path segment (``%XX`` for ``%`` and for
characters ZooKeeper refuses in paths, such as characters outside the Basic Multilingual
Plane). A lock contender's node is ``_c_<nonce>-lock-<seq>`` and an election candidate's
``_c_<nonce>-candidate__lock__<seq>``: we name it up to ``<seq>`` and ZooKeeper appends
the parent's sequence counter. The ``<nonce>`` makes every node name unique, so a create
whose answer was lost with the connection can be found again, and a node is never
confused with a namesake in a parent recreated out of band.

Mixed fleets. The names are chosen so that other clients order our nodes by their
sequence number: Curator's ``InterProcessMutex`` (it sorts every child by what follows
the last ``lock-``; its own nodes are ``_c_<uuid>-lock-<seq>``), kazoo's ``Election``
(it counts children ending in ``__lock__<seq>``), kazoo's ``Lock`` given
``extra_lock_patterns=["-lock-"]``, and ZooKeeper's recipe ``WriteLock`` (it counts every
child by the number after its last ``-``). In turn :func:`queue_contenders` counts their
nodes in our queues: kazoo's ``<uuid>__lock__<seq>`` and ``__rlock__`` (a reader excludes
a writer), Curator's ``...lock-<seq>``, the recipe's ``x-<sessionid>-<seq>``, and nodes of
fencing-coord before this layout (``<kind>-<nonce>-<seq>``).

Sequence numbers are parsed and compared as integers, never as strings (kazoo #606), in
32-bit serial-number arithmetic (RFC 1982), so the order stays right when the parent's
counter wraps from 2^31-1 to -2^31, as long as all live contenders of a queue lie within
2^31 sequence numbers of each other (the queue refuses long before: ``sequence_window``).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from urllib.parse import unquote

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, NamedTuple
else:
    from fencing_coord.typeless import NamedTuple

__all__ = [
    "CANDIDATE_KIND",
    "DEFAULT_SEQUENCE_WINDOW",
    "LEGACY",
    "LOCK_KIND",
    "OURS",
    "Contender",
    "contenders",
    "kind_words",
    "new_nonce",
    "node_prefix",
    "nonce_of",
    "parse_contender",
    "parse_foreign",
    "queue_contenders",
    "queue_order",
    "queue_seqs",
    "segment",
    "serial_distance",
    "unsegment",
]

#: Largest distance, in sequence numbers, tolerated between two live contenders.
DEFAULT_SEQUENCE_WINDOW: Final = 2**30
#: Node kinds of lock contenders and of election candidates.
LOCK_KIND: Final = "lock"
CANDIDATE_KIND: Final = "candidate"
#: What a contender of ours that other clients' nodes share a queue with is called.
OURS: Final = "fencing-coord"
#: Our contenders of the layout before this one (``<kind>-<nonce>-<seq>``).
LEGACY: Final = "fencing-coord-legacy"

_SERIAL_HALF: Final = 2**31
_SERIAL_MOD: Final = 2**32
_NONCE_LENGTH: Final = 16
# What a loss reason calls a node of each kind, and what its parent belongs to.
_KIND_WORDS: Final = {LOCK_KIND: ("lock node", "lock"), CANDIDATE_KIND: ("candidate node", "election")}
# What comes between the kind and the sequence number, per kind (see the module docstring).
_SEPARATOR: Final = {LOCK_KIND: "-", CANDIDATE_KIND: "__lock__"}
# The kind and its separator, as _CONTENDER's second group reads them.
_MARKER: Final = {kind: kind + separator for kind, separator in _SEPARATOR.items()}
# ZooKeeper appends the sequence number to the name we give.
_CONTENDER: Final = re.compile(r"_c_([0-9a-f]{16})-(lock-|candidate__lock__)(-?[0-9]{1,10})")
# Other clients' contender nodes, by flavour, tried in this order (the sequence number last).
# Compiled when a queue first holds a node that is not ours: most processes never meet one,
# and compiling them is a visible part of the backend's import (issue 13: startup).
_FOREIGN_SOURCES: Final = (
    (LEGACY, r"(?:lock|candidate)-[0-9a-f]{16}-(-?[0-9]{10})"),
    ("kazoo", r".*__r?lock__(-?[0-9]{10})"),
    ("curator", r".*lock-(-?[0-9]{10})"),
    ("zookeeper-recipe", r"x--?[0-9]+-(-?[0-9]{10})"),
)


@functools.cache
def _foreign_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((flavor, re.compile(source)) for flavor, source in _FOREIGN_SOURCES)


def segment(text: str) -> str:
    """Escape ``text`` (an already validated name) into one ZooKeeper path segment.

    ZooKeeper refuses, besides what ``check_name`` refuses, U+FFF0..U+FFFF and every
    character outside the BMP (Java stores those as surrogates, which it refuses).
    ``%`` is escaped too, so the mapping is reversible with :func:`unsegment`.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "%" or code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xF8FF or code >= 0xFFF0:
            out.append("".join(f"%{byte:02X}" for byte in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def unsegment(text: str) -> str:
    """The name :func:`segment` escaped into ``text``."""
    return unquote(text)


def new_nonce() -> str:
    """A fresh nonce for one contender node (16 lowercase hex digits)."""
    return os.urandom(_NONCE_LENGTH // 2).hex()


def node_prefix(parent: str, kind: str, nonce: str) -> str:
    """The path to create, sequentially, for a contender of ``kind`` under ``parent``."""
    return f"{parent}/_c_{nonce}-{kind}{_SEPARATOR[kind]}"


def nonce_of(child: str) -> str | None:
    """The nonce in our contender node's name of any kind, None if it is not ours."""
    match = _CONTENDER.fullmatch(child)
    return None if match is None else match.group(1)


def _kind_in(node: str) -> str | None:
    match = _CONTENDER.fullmatch(node)
    return None if match is None else match.group(2).split("_")[0].rstrip("-")


def kind_words(node: str) -> tuple[str, str]:
    """What a loss reason calls ``node`` (by its kind) and what its parent belongs to:
    ``("lock node", "lock")`` or ``("candidate node", "election")``. ``node`` may also be
    a bare kind."""
    kind = _kind_in(node) or node
    return _KIND_WORDS.get(kind, ("node", "queue"))


def serial_distance(a: int, b: int) -> int:
    """``a - b`` in 32-bit serial-number arithmetic: negative when ``a`` was issued
    before ``b``, correct across the counter's wrap while |a - b| < 2^31."""
    return (a - b + _SERIAL_HALF) % _SERIAL_MOD - _SERIAL_HALF


class Contender(NamedTuple):
    """One contender node of a queue: ours (``flavor`` :data:`OURS`, with its nonce) or
    another client's (``flavor`` names which; ``nonce`` empty)."""

    node: str
    nonce: str
    seq: int
    flavor: str = OURS

    @property
    def ours(self) -> bool:
        return self.flavor == OURS


def parse_contender(child: str, kind: str) -> Contender | None:
    """Parse a child name; None for anything that is not one of our contenders of
    ``kind``. The sequence number is ZooKeeper's ``%010d`` of a signed 32-bit int
    (``-2147483648`` after the wrap) and is parsed as an integer."""
    match = _CONTENDER.fullmatch(child)
    if match is None or match.group(2) != _MARKER.get(kind):
        return None
    seq = int(match.group(3))
    if not -_SERIAL_HALF <= seq < _SERIAL_HALF:
        return None
    return Contender(child, match.group(1), seq)


def parse_foreign(child: str) -> Contender | None:
    """Another client's contender node (see the module docstring), or None."""
    for flavor, pattern in _foreign_patterns():
        match = pattern.fullmatch(child)
        if match is not None:
            seq = int(match.group(1))
            return Contender(child, "", seq, flavor) if -_SERIAL_HALF <= seq < _SERIAL_HALF else None
    return None


def contenders(children: Sequence[str], kind: str) -> list[Contender]:
    """Our contenders of ``kind`` among ``children`` (other children are left out)."""
    return [c for c in (parse_contender(child, kind) for child in children) if c is not None]


def queue_contenders(children: Sequence[str], kind: str) -> list[Contender]:
    """Everyone who queues among ``children``: our contenders of ``kind`` and other
    clients' contender nodes (kazoo, Curator, ZooKeeper's recipes, older fencing-coord)."""
    found = []
    for child in children:
        contender = parse_contender(child, kind)
        if contender is None and _CONTENDER.fullmatch(child) is None:
            contender = parse_foreign(child)
        if contender is not None:
            found.append(contender)
    return found


def queue_seqs(children: Sequence[str], kind: str) -> list[tuple[int, str]]:
    """``(sequence number, child)`` of everyone who queues among ``children``: the same
    children as :func:`queue_contenders`, without making a Contender of each (a waiter
    reads the whole queue twice per grant)."""
    marker = _MARKER.get(kind)
    found = []
    for child in children:
        match = _CONTENDER.fullmatch(child)
        if match is not None:
            if match.group(2) != marker:
                continue  # our node of the other kind: nobody's contender here
            seq = int(match.group(3))
        else:
            foreign = parse_foreign(child)
            if foreign is None:
                continue
            seq = foreign.seq
        if -_SERIAL_HALF <= seq < _SERIAL_HALF:
            found.append((seq, child))
    return found


def queue_order(contenders: Sequence[Contender]) -> list[Contender]:
    """``contenders`` in queue order (serial arithmetic relative to any one of them;
    consistent while they all lie within the sequence window of each other)."""
    if not contenders:
        return []
    ref = contenders[0].seq
    return sorted(contenders, key=lambda c: serial_distance(c.seq, ref))
