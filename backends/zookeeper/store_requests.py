"""The requests of :class:`.store.ZooKeeperStore`'s operations (see :mod:`.store_steps`):
each step says what to send (``start(client)`` returns kazoo's asynchronous result) and
whether sending it again after a lost connection is harmless; a front end sends it and
hands the answer back (:class:`StepRun`), or :data:`LOST` when the connection took the
answer of a request that is not."""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final

from kazoo.exceptions import (
    BadVersionError,
    KazooException,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
)

from .kazoo_results import kazoo_error

__all__ = ["LOST", "Commit", "Ensure", "Op", "Read", "Step", "StepRun", "applied"]

#: Failures of one operation of a transaction that mean "changed since read".
_CHANGED: Final = (BadVersionError, NodeExistsError, NoNodeError)
#: What ZooKeeper answers for the other operations of a failed transaction (before the
#: failed one: rolled back; after it: not tried).
_NOT_THE_CAUSE: Final = (RolledBackError, RuntimeInconsistency)


class _Lost:
    """The answer a front end sends for a non-idempotent request whose answer the
    connection took with it."""

    def __repr__(self) -> str:
        return "LOST"


LOST: Final = _Lost()


# -- steps: one request each -----------------------------------------------------------------


def _gather(client: Any, results: list[Any]) -> Any:
    """One kazoo result for several requests sent together (one round trip): a list of
    their values, None for a node that does not exist; the first other error otherwise."""
    out = client.handler.async_result()
    pending = [len(results)]
    lock = threading.Lock()

    def done(_: Any) -> None:
        with lock:
            pending[0] -= 1
            if pending[0]:
                return
        values = []
        for result in results:
            if result.successful():
                values.append(result.value)
            elif isinstance(result.exception, NoNodeError):
                values.append(None)
            else:
                out.set_exception(result.exception)
                return
        out.set(values)

    for result in results:
        result.rawlink(done)
    return out


@dataclass(frozen=True)
class Read:
    """Step: read ``paths`` together (after a ``sync`` when ``sync``); reply a list of
    ``(data, stat)`` or None per path."""

    paths: tuple[str, ...]
    sync: bool = False
    idempotent: bool = True

    @property
    def what(self) -> str:
        return f"read {', '.join(self.paths)}"

    def start(self, client: Any) -> Any:
        if self.sync:
            client.sync_async(self.paths[0])
        return _gather(client, [client.get_async(path) for path in self.paths])


@dataclass(frozen=True)
class Ensure:
    """Step: make sure the persistent ``paths`` exist (parents included)."""

    paths: tuple[str, ...]
    idempotent: bool = True

    @property
    def what(self) -> str:
        return f"create {', '.join(self.paths)}"

    def start(self, client: Any) -> Any:
        return _gather(client, [client.ensure_path_async(path) for path in self.paths])


@dataclass(frozen=True)
class Op:
    """One operation of a transaction: ``kind`` check/set/create/delete."""

    kind: str
    path: str
    data: bytes = b""
    version: int = -1


@dataclass(frozen=True)
class Commit:
    """Step: one transaction; reply its list of results (a value or an exception per
    operation), or :data:`LOST`."""

    verb: str
    ops: tuple[Op, ...]
    idempotent: bool

    @property
    def what(self) -> str:
        return f"{self.verb} {self.ops[-1].path}"

    def start(self, client: Any) -> Any:
        transaction = client.transaction()
        for op in self.ops:
            if op.kind == "check":
                transaction.check(op.path, op.version)
            elif op.kind == "set":
                transaction.set_data(op.path, op.data, op.version)
            elif op.kind == "create":
                transaction.create(op.path, op.data)
            else:
                transaction.delete(op.path, op.version)
        return transaction.commit_async()


Step = Read | Ensure | Commit


def applied(verb: str, results: list[Any]) -> bool:
    """True if the transaction was applied, False if a node had changed since read;
    any other failure is raised, mapped."""
    failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, _NOT_THE_CAUSE)]
    for failure in failures:
        if not isinstance(failure, _CHANGED) and isinstance(failure, KazooException):
            raise kazoo_error(verb, failure) from failure
    return not failures and len(results) > 0


class StepRun:
    """One run of a step generator, for a runner: the next step, where its reply goes,
    and the outcome once there is no next step."""

    __slots__ = ("outcome", "reply", "steps")

    def __init__(self, steps: Generator[Step, Any, Any]) -> None:
        self.steps = steps
        self.reply: Any = None
        self.outcome: Any = None

    def next(self) -> Step | None:
        try:
            return self.steps.send(self.reply)
        except StopIteration as done:
            self.outcome = done.value
            return None
