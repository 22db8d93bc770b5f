"""The state object of one resource in :class:`~fencing_coord.stores.s3.S3Store`.

One object holds a resource's whole state, highest token and values, so that checking
the token and writing a value is one conditional ``PutObject``. Layout (bytes)::

    fencing-coord-s3-state 1\\n
    {"max_token": 9, "values": [["k1", 3], ["k2", 0]]}\\n      (one line of JSON)
    <the values' bytes, concatenated in the order listed>

The token lives in the body, not in object metadata: an ETag is computed from the body
only, so with the token in metadata two states differing only in their token could
share an ETag, and a conditional write could then lower the token. With the whole state
in the body, equal ETags mean equal states, and a decision taken on the state an ETag
names is right for whichever object carries that ETag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import ConfigurationError

__all__ = ["MAGIC", "ResourceState", "decode", "encode"]

MAGIC = b"fencing-coord-s3-state 1\n"


@dataclass
class ResourceState:
    """A resource as stored: its highest admitted token (None before the first) and values."""

    max_token: int | None = None
    values: dict[str, bytes] = field(default_factory=dict)


def encode(state: ResourceState) -> bytes:
    """The object body for ``state``."""
    header = {"max_token": state.max_token, "values": [[key, len(value)] for key, value in state.values.items()]}
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    return b"".join([MAGIC, head, b"\n", *state.values.values()])


def decode(body: bytes, where: str) -> ResourceState:
    """Parse an object body; :class:`ConfigurationError` naming ``where`` if it is not one
    of ours (another program's object under our prefix cannot be fixed by retrying)."""
    if not body.startswith(MAGIC):
        raise ConfigurationError(f"{where} is not a fencing-coord state object; choose another prefix or bucket")
    end = body.find(b"\n", len(MAGIC))
    try:
        header = json.loads(body[len(MAGIC):end])
        max_token = header["max_token"]
        listing = header["values"]
        if (max_token is not None and type(max_token) is not int) or not isinstance(listing, list):
            raise ValueError("wrong field types")
        values: dict[str, bytes] = {}
        offset = end + 1
        for key, length in listing:
            if not isinstance(key, str) or type(length) is not int or length < 0:
                raise ValueError("wrong value entry")
            values[key] = body[offset:offset + length]
            offset += length
        if end < 0 or offset != len(body):
            raise ValueError("lengths do not add up")
    except KeyError as exc:
        raise ConfigurationError(f"{where} is a damaged fencing-coord state object: no field {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{where} is a damaged fencing-coord state object: {exc}") from exc
    return ResourceState(max_token, values)
