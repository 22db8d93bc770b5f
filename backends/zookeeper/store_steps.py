"""What :class:`.store.ZooKeeperStore` and :class:`.aio_store.AsyncZooKeeperStore` do, as
generators of requests (steps) without I/O: both front ends send each step's request and
send its answer back in, so the decisions are written once.

A fenced write is one transaction (``multi``): the fence at the version read (``check``
when the token equals the highest, ``setData`` with the new token when it raises it) and
the key's znode at the version read (``setData``, or ``create`` for a new key). If the
fence changed in between (a raise), the transaction fails as a whole and the operation
reads again and decides again; writers of an equal token never change the fence, so they
never conflict with each other, only with a raise (or a writer of the same key). A token
below the highest (or equal, when strict) is refused without writing.

A fenced read reads the key, then confirms in one transaction that the fence (checked or
raised) and the key (checked; a missing key created and deleted again, which fails if it
exists) are still as read: the value returned is the value while the token was admitted.

The versions of fences and keys last seen are remembered (:class:`Seen`, a bounded
hint): a fenced write then sends its transaction without reading first, one round trip.
A hint is only ever used inside a transaction that checks it, and a highest token only
grows (a refusal on a hint is right: the highest is at least that now), so a stale hint
costs one failed transaction, never a wrong decision. (The store never deletes a fence;
deleting one out of band resets the resource, as it would in any layout.)

After a connection loss with a transaction in flight, the step reads the nodes again
(after a ``sync``) and recognises its own write by its write id: applied, not applied
(the version it was conditional on, or the next one written by someone else), or, when
the node was written over more than once since, :class:`BackendUnavailable` "outcome unknown".
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Final

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from fencing_coord.errors import BackendUnavailable
from fencing_coord.stores.base import FencedOutcome, admits

from .store_nodes import (
    Fence,
    Legacy,
    Paths,
    Value,
    decode_fence,
    decode_legacy,
    decode_value,
    encode_fence,
    encode_value,
    new_write_id,
    tombstone,
)
from .store_requests import LOST, Commit, Ensure, Op, Read, Step, applied

__all__ = [
    "ATTEMPTS",
    "Seen",
    "create_resource",
    "fenced_steps",
    "highest_steps",
    "plain_read_steps",
    "plain_write_steps",
]

#: How many times an operation reads and decides again when overtaken by a concurrent
#: change before it gives up (BackendUnavailable, nothing written).
ATTEMPTS: Final = 100
#: How many fences and keys a store remembers the version of.
_SEEN_LIMIT: Final = 10_000


# -- what was read ---------------------------------------------------------------------------


def _fence(path: str, read: Any) -> Fence | None:
    return None if read is None else decode_fence(path, bytes(read[0]), int(read[1].version))


def _value(path: str, read: Any) -> Value | None:
    return None if read is None else decode_value(path, bytes(read[0]), int(read[1].version))


class Seen:
    """The versions of fences and keys a store last saw (hints; see the module docstring).
    Shared by a store's threads: single dict operations only."""

    def __init__(self) -> None:
        self.fences: dict[str, Fence] = {}
        self.keys: dict[str, int] = {}

    def fence(self, path: str, fence: Fence | None) -> None:
        if fence is None:
            self.fences.pop(path, None)
            return
        if len(self.fences) >= _SEEN_LIMIT:
            self.fences.clear()
        self.fences[path] = fence

    def key(self, path: str, version: int | None) -> None:
        if version is None:
            self.keys.pop(path, None)
            return
        if len(self.keys) >= _SEEN_LIMIT:
            self.keys.clear()
        self.keys[path] = version


def _recognise(now: Fence | Value | None, expected: int | None, write_id: bytes) -> bool | None:
    """After a lost answer: was our conditional write (on ``expected``, None: a create)
    applied? None when it cannot be told any more."""
    if now is None:
        return False if expected is None else None  # a node deleted out of band: who knows
    if now.write_id == write_id:
        return True
    following = 0 if expected is None else expected + 1  # the version our write would have made
    return False if now.version <= following else None


def _overtaken(what: str) -> BackendUnavailable:
    return BackendUnavailable(f"{what}: overtaken by concurrent changes {ATTEMPTS} times in a row; nothing "
                              "was written, try again")


# -- operations ------------------------------------------------------------------------------


def create_resource(paths: Paths, resource: str) -> Generator[Step, Any, None]:
    """Create the fence of ``resource``, moving a resource of the layout before (its
    highest token and values) and leaving a tombstone at the old path, in one transaction.
    Whoever created it first (another writer, a concurrent move), the caller reads again."""
    fence_path, legacy_path = paths.fence(resource), paths.legacy(resource)
    yield Ensure((paths.base, paths.legacy_base))
    [read] = yield Read((legacy_path,))
    write_id = new_write_id()
    if read is None:
        legacy = Legacy(None, {}, -1, moved=True)
        ops = [Op("create", legacy_path, tombstone(fence_path))]
    else:
        legacy = decode_legacy(legacy_path, bytes(read[0]), int(read[1].version))
        ops = [Op("check" if legacy.moved else "set", legacy_path, tombstone(fence_path), legacy.version)]
    ops.append(Op("create", fence_path, encode_fence(legacy.highest, write_id)))
    ops += [Op("create", paths.key(resource, key), encode_value(write_id, value))
            for key, value in sorted(legacy.values.items())]
    results = yield Commit("create resource", tuple(ops), idempotent=True)
    applied(f"create resource {fence_path}", results)


def fenced_steps(paths: Paths, resource: str, key: str, token: int, strict: bool, write: bytes | None,
                 seen: Seen) -> Generator[Step, Any, FencedOutcome]:
    """One fenced operation (see the module docstring): store ``write`` under ``key``, or
    (None) read ``key``."""
    fence_path, key_path = paths.fence(resource), paths.key(resource, key)
    # A write sends its transaction at once when both versions are known; a read needs the value.
    known: Value | int | None = seen.keys.get(key_path) if write is not None else None
    fence = seen.fences.get(fence_path) if known is not None else None
    for _ in range(ATTEMPTS):
        if fence is None:
            fence_read, key_read = yield Read((fence_path, key_path))
            fence, current = _fence(fence_path, fence_read), _value(key_path, key_read)
            known = current
            seen.fence(fence_path, fence)
            if fence is None:
                yield from create_resource(paths, resource)
                continue
        if not admits(fence.highest, token, strict):
            return FencedOutcome(False, fence.highest)
        key_version = known.version if isinstance(known, Value) else known
        write_id = new_write_id()
        raises = fence.highest is None or token > fence.highest
        ops = [Op("set", fence_path, encode_fence(token, write_id), fence.version) if raises
               else Op("check", fence_path, version=fence.version)]
        if write is not None:
            data = encode_value(write_id, write)
            ops.append(Op("create", key_path, data) if key_version is None else Op("set", key_path, data, key_version))
        elif key_version is None:
            ops += [Op("create", key_path, encode_value(write_id, b"")), Op("delete", key_path)]
        else:
            ops.append(Op("check", key_path, version=key_version))
        changes = write is not None or raises
        results = yield Commit("write" if write is not None else "read", tuple(ops), idempotent=not changes)
        if results is LOST:
            results = yield from _settle(fence_path, key_path, fence, key_version, write_id, raises, write)
        if applied(f"{'write' if write is not None else 'read'} {key_path}", results):
            if raises:
                seen.fence(fence_path, Fence(token, fence.version + 1, write_id))
            if write is not None:
                seen.key(key_path, 0 if key_version is None else key_version + 1)
            value = known.value if write is None and isinstance(known, Value) else None
            return FencedOutcome(True, fence.highest, value)
        seen.fence(fence_path, None)
        seen.key(key_path, None)
        fence = None
    raise _overtaken(f"fenced operation on {key_path}")


def _settle(fence_path: str, key_path: str, fence: Fence, key_version: int | None, write_id: bytes,
            raised: bool, write: bytes | None) -> Generator[Step, Any, list[Any]]:
    """Our transaction's answer was lost: read the nodes it changed again and tell
    whether it was applied (as a transaction's results: ``[True]`` or ``[BadVersion]``),
    or raise BackendUnavailable when that cannot be told."""
    fence_read, key_read = yield Read((fence_path, key_path), sync=True)
    verdicts = []
    if write is not None:
        verdicts.append(_recognise(_value(key_path, key_read), key_version, write_id))
    if raised:
        verdicts.append(_recognise(_fence(fence_path, fence_read), fence.version, write_id))
    if True in verdicts:
        return [True]
    if False in verdicts:
        return [BadVersionError()]
    raise BackendUnavailable(f"{'write' if write is not None else 'read'} {key_path}: outcome unknown: the "
                             "connection dropped with it in flight, and its nodes were written over more than "
                             "once before it could look; it may or may not have been applied")


def plain_write_steps(paths: Paths, resource: str, key: str, value: bytes, seen: Seen) -> Generator[Step, Any, None]:
    """Store ``value`` under ``key`` whatever the fence says (the unsafe baseline): one
    unconditional ``setData``, or a create for a new key."""
    fence_path, key_path = paths.fence(resource), paths.key(resource, key)
    exists = key_path in seen.keys
    for _ in range(ATTEMPTS):
        data = encode_value(new_write_id(), value)
        op = Op("set", key_path, data) if exists else Op("create", key_path, data)
        results = yield Commit("write", (op,), idempotent=True)
        if applied(f"write {key_path}", results):
            seen.key(key_path, int(results[0].version) if exists else 0)
            return
        if not exists and isinstance(results[0], NoNodeError):  # no fence yet
            [fence_read] = yield Read((fence_path,))
            if fence_read is None:
                yield from create_resource(paths, resource)
        exists = isinstance(results[0], NodeExistsError)
    raise _overtaken(f"plain write to {key_path}")


def _unmoved(paths: Paths, resource: str, fence: Fence | None) -> Generator[Step, Any, Legacy | None]:
    """The resource in the layout before, when it has no fence (None when it has)."""
    if fence is not None:
        return None
    legacy_path = paths.legacy(resource)
    [read] = yield Read((legacy_path,))
    return None if read is None else decode_legacy(legacy_path, bytes(read[0]), int(read[1].version))


def plain_read_steps(paths: Paths, resource: str, key: str) -> Generator[Step, Any, bytes | None]:
    fence_path, key_path = paths.fence(resource), paths.key(resource, key)
    fence_read, key_read = yield Read((fence_path, key_path))
    legacy = yield from _unmoved(paths, resource, _fence(fence_path, fence_read))
    if legacy is not None:
        return legacy.values.get(key)
    current = _value(key_path, key_read)
    return None if current is None else current.value


def highest_steps(paths: Paths, resource: str) -> Generator[Step, Any, int | None]:
    """The highest token, read after a ``sync``: it reflects every write acknowledged
    before the call."""
    fence_path = paths.fence(resource)
    [fence_read] = yield Read((fence_path,), sync=True)
    fence = _fence(fence_path, fence_read)
    legacy = yield from _unmoved(paths, resource, fence)
    if legacy is not None:
        return legacy.highest
    return None if fence is None else fence.highest
