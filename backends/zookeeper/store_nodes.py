"""The znodes of :class:`.store.ZooKeeperStore`: where they are and what they hold.

Layout (below the backend's chroot)::

    /fencing-coord/<namespace>/resources-v2/<resource>         the fence: highest admitted token
    /fencing-coord/<namespace>/resources-v2/<resource>/<key>   one znode per key: its value
    /fencing-coord/<namespace>/resources/<resource>            the layout before (one znode per
                                                               resource, JSON); a tombstone once
                                                               the resource has moved

A fence holds ``<highest> <write id>`` in ASCII (``-`` before the first token): its
version is the compare-and-set handle of the resource's highest token. A key's znode holds
``\\x01``, a 16-byte write id and the value's bytes. The write id of the last write is
how a writer recognises its own write after a connection loss took the answer.

The layout before this one kept a resource's values and highest token in one JSON znode
(:class:`Legacy`). A resource found there is moved on first use (see
:func:`.store_steps.create_resource`), and the old znode is turned into a tombstone, in
one transaction with the creation of the fence: so fencing-coord versions that still use
the old layout fail loudly on it ("does not hold a fencing-coord resource") instead of
fencing against a second, forgotten highest token. A resource created in this layout gets
a tombstone at the old path too, for the same reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any, Final

from fencing_coord.errors import ConfigurationError
from fencing_coord.spi import ROOT

from .names import segment

__all__ = [
    "LAYOUT",
    "MAX_VALUE_BYTES",
    "Fence",
    "Legacy",
    "Paths",
    "Value",
    "decode_fence",
    "decode_legacy",
    "decode_value",
    "encode_fence",
    "encode_value",
    "new_write_id",
    "tombstone",
]

#: The layout this module describes (the tombstone at the old path names it).
LAYOUT: Final = 2
#: Largest value: ZooKeeper's default jute.maxbuffer is 1 MiB - 1 per request, and a
#: write's transaction carries the value, its header, the fence operation and the paths.
MAX_VALUE_BYTES: Final = 1_000_000

_VALUE_FORMAT: Final = b"\x01"
_ID_BYTES: Final = 16
_NO_TOKEN: Final = b"-"


def new_write_id() -> bytes:
    return os.urandom(_ID_BYTES)


@dataclass(frozen=True)
class Paths:
    """The paths of one namespace's resources."""

    base: str
    legacy_base: str

    @classmethod
    def of(cls, chroot: str, namespace: str) -> Paths:
        space = f"{chroot}{ROOT}/{segment(namespace)}"
        return cls(f"{space}/resources-v{LAYOUT}", f"{space}/resources")

    def fence(self, resource: str) -> str:
        return f"{self.base}/{segment(resource)}"

    def key(self, resource: str, key: str) -> str:
        return f"{self.base}/{segment(resource)}/{segment(key)}"

    def legacy(self, resource: str) -> str:
        return f"{self.legacy_base}/{segment(resource)}"


@dataclass(frozen=True)
class Fence:
    """A fence znode as read: the highest admitted token (None before the first) at
    ``version``, last written by ``write_id``."""

    highest: int | None
    version: int
    write_id: bytes


@dataclass(frozen=True)
class Value:
    """A key's znode as read."""

    value: bytes
    version: int
    write_id: bytes


def encode_fence(highest: int | None, write_id: bytes) -> bytes:
    token = _NO_TOKEN if highest is None else str(highest).encode("ascii")
    return token + b" " + write_id.hex().encode("ascii")


def decode_fence(path: str, data: bytes, version: int) -> Fence:
    token, _, write_id = data.partition(b" ")
    try:
        highest = None if token == _NO_TOKEN else int(token.decode("ascii"))
        if highest is not None and (highest < 0 or not token.isdigit()):
            raise ValueError(token)
        ident = bytes.fromhex(write_id.decode("ascii"))
        if len(ident) != _ID_BYTES:
            raise ValueError(write_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path} does not hold a fencing-coord resource fence ({data[:40]!r})") from exc
    return Fence(highest, version, ident)


def encode_value(write_id: bytes, value: bytes) -> bytes:
    return _VALUE_FORMAT + write_id + value


def decode_value(path: str, data: bytes, version: int) -> Value:
    if len(data) < 1 + _ID_BYTES or data[:1] != _VALUE_FORMAT:
        raise ConfigurationError(f"{path} does not hold a fencing-coord value ({data[:40]!r})")
    return Value(data[1 + _ID_BYTES:], version, data[1:1 + _ID_BYTES])


@dataclass(frozen=True)
class Legacy:
    """A resource znode of the layout before (``moved``: a tombstone left by the move)."""

    highest: int | None
    values: dict[str, bytes]
    version: int
    moved: bool = False


def tombstone(fence_path: str) -> bytes:
    """What the old path holds once the resource lives at ``fence_path``: JSON without
    the ``highest`` and ``values`` fields older versions need, so they refuse it."""
    return json.dumps({"layout": LAYOUT, "moved_to": fence_path}, separators=(",", ":")).encode("ascii")


def decode_legacy(path: str, data: bytes, version: int) -> Legacy:
    """A resource znode of the layout before, or a tombstone; ConfigurationError for
    anything else."""
    try:
        doc: Any = json.loads(data) if data else {"highest": None, "values": {}}
        if isinstance(doc, dict) and "moved_to" in doc:
            return Legacy(None, {}, version, moved=True)
        highest = doc["highest"]
        values = {str(k): base64.b64decode(v, validate=True) for k, v in doc["values"].items()}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise ConfigurationError(f"{path} does not hold a fencing-coord resource ({exc!r})") from exc
    if highest is not None and (isinstance(highest, bool) or not isinstance(highest, int)):
        raise ConfigurationError(f"{path} holds a malformed highest token {highest!r}")
    return Legacy(highest, values, version)
