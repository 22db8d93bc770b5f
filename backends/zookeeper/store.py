"""Fenced resources in ZooKeeper: :class:`ZooKeeperStore`, one persistent znode per
resource, ``/fencing-coord/<namespace>/resources/<resource>`` (below the backend's chroot),
holding its values and its highest accepted token."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Final

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from fencing_coord.errors import BackendUnavailable, ConfigurationError, InvalidArgument
from fencing_coord.spi import ROOT
from fencing_coord.stores.base import FencedOutcome, Store, admits

from .backend import ZooKeeperBackend
from .names import segment
from .session import OutcomeUnknown

__all__ = [
    "CAS_FAILED",
    "ConfirmNode",
    "ReadNode",
    "Resource",
    "StepRun",
    "WriteNode",
    "ZooKeeperStore",
    "confirm_request",
    "fenced_steps",
    "write_request",
]

# ZooKeeper's default jute.maxbuffer is 1 MiB - 1; a larger write drops the connection.
_MAX_ZNODE_BYTES: Final = 1_000_000
# How many recent writes a resource node remembers, to tell after a connection loss
# whether our own conditional write was applied.
_RECENT_WRITES: Final = 16


@dataclass
class _Resource:
    """The content of one resource node."""

    highest: int | None
    values: dict[str, bytes]
    writes: list[str]

    @classmethod
    def decode(cls, path: str, data: bytes | None) -> _Resource:
        if not data:
            return cls(None, {}, [])
        try:
            doc = json.loads(data)
            highest = doc["highest"]
            values = {str(k): base64.b64decode(v, validate=True) for k, v in doc["values"].items()}
            writes = [str(w) for w in doc.get("writes", [])]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise ConfigurationError(f"{path} does not hold a fencing-coord resource ({exc!r})") from exc
        if highest is not None and (isinstance(highest, bool) or not isinstance(highest, int)):
            raise ConfigurationError(f"{path} holds a malformed highest token {highest!r}")
        return cls(highest, values, writes)

    def encode(self, path: str) -> bytes:
        doc = {
            "highest": self.highest,
            "values": {k: base64.b64encode(v).decode("ascii") for k, v in self.values.items()},
            "writes": self.writes[-_RECENT_WRITES:],
        }
        data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("ascii")
        if len(data) > _MAX_ZNODE_BYTES:
            raise InvalidArgument(
                f"resource {path} would hold {len(data)} bytes; a ZooKeeper znode holds at most about "
                f"{_MAX_ZNODE_BYTES} (jute.maxbuffer): keep fewer or smaller values per resource"
            )
        return data


@dataclass(frozen=True)
class ReadNode:
    """Step: read the resource node; reply ``(resource, version or None)``."""

    path: str


@dataclass(frozen=True)
class ConfirmNode:
    """Step: is the node still at ``version`` (asked through the leader)? Reply a bool."""

    path: str
    version: int


@dataclass(frozen=True)
class WriteNode:
    """Step: compare-and-set ``doc`` at ``version`` (None: create); reply True if applied."""

    path: str
    doc: _Resource
    version: int | None


Step = ReadNode | ConfirmNode | WriteNode


def fenced_steps(path: str, key: str, token: int, strict: bool,
                 write: bytes | None) -> Generator[Step, Any, FencedOutcome]:
    """One fenced operation as a compare-and-set of the resource's node, started over
    when someone else wrote first: store ``write`` under ``key``, or (None) read ``key``.
    A read that leaves the highest token as it is confirms the version through the
    leader instead of writing. Written once, without I/O: both front ends carry the
    steps out."""
    while True:
        doc, version = yield ReadNode(path)
        highest = doc.highest
        if not admits(highest, token, strict):
            return FencedOutcome(False, highest)
        value = None
        if write is not None:
            doc.values[key] = write
        else:
            value = doc.values.get(key)
            if highest is not None and token <= highest and version is not None:
                if (yield ConfirmNode(path, version)):
                    return FencedOutcome(True, highest, value)
                continue
        doc.highest = token if highest is None else max(highest, token)
        if (yield WriteNode(path, doc, version)):
            return FencedOutcome(True, highest, value)


Resource = _Resource


class StepRun:
    """One run of :func:`fenced_steps`, for a runner: the next step, where its reply goes,
    and the outcome once there is no next step."""

    __slots__ = ("outcome", "reply", "steps")

    def __init__(self, steps: Generator[Step, Any, FencedOutcome]) -> None:
        self.steps = steps
        self.reply: Any = None
        self.outcome = FencedOutcome(False, None)

    def next(self) -> Step | None:
        try:
            return self.steps.send(self.reply)
        except StopIteration as done:
            self.outcome = done.value
            return None

#: The kazoo failures of a compare-and-set that mean "someone else changed it first".
CAS_FAILED: Final = (BadVersionError, NodeExistsError, NoNodeError)


def write_request(client: Any, path: str, doc: _Resource, version: int | None) -> tuple[Callable[[], Any], str]:
    """(start of the compare-and-set of ``doc`` at ``version`` (None: create), the id
    recorded in the node that recognises this write after a lost answer)."""
    write_id = uuid.uuid4().hex
    doc.writes.append(write_id)
    data = doc.encode(path)
    if version is None:
        return functools.partial(client.create_async, path, data, makepath=True), write_id
    return functools.partial(client.set_async, path, data, version=version), write_id


def confirm_request(client: Any, path: str, version: int) -> Any:
    """A check transaction: is ``path`` still at ``version`` (answered by the leader)."""
    transaction = client.transaction()
    transaction.check(path, version)
    return transaction.commit_async()


class ZooKeeperStore(Store):
    """A fenced-resource store in ZooKeeper, sharing a :class:`ZooKeeperBackend`'s session.

    Each resource is one persistent znode, ``/fencing-coord/<namespace>/resources/<resource>``,
    holding its highest accepted token and all its values (JSON, values base64), so the
    token check and the write are one versioned compare-and-set (``setData`` with the
    version read): a concurrent writer makes it fail with ``BadVersion`` and the operation
    starts over on the new content. A fenced read that does not raise the highest token
    still confirms the version with a ``check`` transaction, so it never acts on a stale
    follower's copy. Safe across threads and processes.

    After a connection loss during the conditional write, the store reads the node again
    and recognises its own write by an id kept among the last 16 writes; if no connection
    comes back within the backend's ``timeout``, it raises :class:`BackendUnavailable` and
    the write may or may not have been applied (read the value to find out). Everything of a
    resource must fit one znode (about 1 MB, ZooKeeper's ``jute.maxbuffer``): one value may
    be up to 700 000 bytes (``max_value_size``; base64 makes it a third larger), and a write
    that would make the resource's znode too large is refused with
    :class:`InvalidArgument`. ``namespace`` defaults to the backend's.
    """

    max_value_size = 700_000

    def __init__(self, backend: ZooKeeperBackend, *, namespace: str | None = None) -> None:
        """Keep resources on ``backend``'s ZooKeeper (its session, chroot and, unless
        given, namespace). The store does not close the backend."""
        if not isinstance(backend, ZooKeeperBackend):
            raise ConfigurationError(f"ZooKeeperStore needs a ZooKeeperBackend, not {type(backend).__name__}")
        self._backend = backend
        self._session = backend._session
        space = backend.namespace if namespace is None else namespace
        self._base = f"{backend.chroot}{ROOT}/{segment(space)}/resources"

    def __repr__(self) -> str:
        return f"ZooKeeperStore({self._base!r})"

    def _path(self, resource: str) -> str:
        return f"{self._base}/{segment(resource)}"

    def _read(self, path: str) -> tuple[_Resource, int | None]:
        client = self._session.client
        try:
            data, stat = self._session.request(f"read {path}", lambda: client.get_async(path),
                                               expected=(NoNodeError,))
        except NoNodeError:
            return _Resource(None, {}, []), None
        return _Resource.decode(path, bytes(data)), int(stat.version)

    def _write(self, path: str, doc: _Resource, version: int | None) -> bool:
        """Compare-and-set: True if applied, False if someone else changed it first."""
        start, write_id = write_request(self._session.client, path, doc, version)
        try:
            self._session.request(f"write {path}", start, idempotent=False, expected=CAS_FAILED)
            return True
        except CAS_FAILED:
            return False
        except OutcomeUnknown as exc:
            current, now = self._read(path)
            if write_id in current.writes:
                return True
            # Our conditional write could only have made version + 1 (or 0, a create). The
            # node lists its last _RECENT_WRITES write ids: while no more writes than that
            # followed, our id's absence proves ours was not applied; beyond, it proves
            # nothing, and the caller must not be told refused (nor accepted).
            followed = -1 if now is None else now - (-1 if version is None else version)
            if followed <= _RECENT_WRITES:
                return False
            raise BackendUnavailable(
                f"write to {path}: the connection dropped with the write in flight and {followed} writes "
                "followed before it could be checked; its outcome is unknown"
            ) from exc

    def _confirm(self, path: str, version: int) -> bool:
        """True if ``path`` is still at ``version``, asked through the leader (a check
        transaction), so a read from a lagging follower is never acted on."""
        results = self._session.request(f"confirm {path}", functools.partial(confirm_request, self._session.client,
                                                                              path, version))
        return bool(results) and results[0] is True

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        return self._fenced(resource, key, token, strict, write=value)

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        return self._fenced(resource, key, token, strict, write=None)

    def _fenced(self, resource: str, key: str, token: int, strict: bool, write: bytes | None) -> FencedOutcome:
        """One fenced operation: :func:`fenced_steps`, carried out on this session."""
        run = StepRun(fenced_steps(self._path(resource), key, token, strict, write))
        while (step := run.next()) is not None:
            match step:
                case ReadNode(path):
                    run.reply = self._read(path)
                case ConfirmNode(path, version):
                    run.reply = self._confirm(path, version)
                case WriteNode(path, doc, version):
                    run.reply = self._write(path, doc, version)
        return run.outcome

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        path = self._path(resource)
        while True:
            doc, version = self._read(path)
            doc.values[key] = value
            if self._write(path, doc, version):
                return

    def plain_read(self, resource: str, key: str) -> bytes | None:
        doc, _ = self._read(self._path(resource))
        return doc.values.get(key)

    def highest_token(self, resource: str) -> int | None:
        path = self._path(resource)
        client = self._session.client
        # sync() first: the answer reflects every write acknowledged before this call.
        self._session.request(f"sync {path}", lambda: client.sync_async(path))
        doc, _ = self._read(path)
        return doc.highest
