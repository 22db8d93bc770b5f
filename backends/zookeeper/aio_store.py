"""Fenced resources in ZooKeeper for asyncio: :class:`AsyncZooKeeperStore`, the nodes and
transactions of :class:`.store.ZooKeeperStore` (the steps of :mod:`.store_steps`),
carried out through an :class:`.aio_backend.AsyncZooKeeperBackend`'s session."""

from __future__ import annotations

import functools
import logging
from collections.abc import Generator
from typing import Any

from fencing_coord.aio.gate import AsyncStore
from fencing_coord.errors import ConfigurationError
from fencing_coord.stores.base import FencedOutcome

from .aio_backend import AsyncZooKeeperBackend
from .session import OutcomeUnknown
from .store import ZooKeeperStore
from .store_nodes import Paths
from .store_requests import LOST, Step, StepRun
from .store_steps import Seen, fenced_steps, highest_steps, plain_read_steps, plain_write_steps

__all__ = ["AsyncZooKeeperStore"]

_log = logging.getLogger(__name__)


class AsyncZooKeeperStore(AsyncStore):
    """Resources in ZooKeeper (a fence znode each and a znode per key, as
    :class:`ZooKeeperStore`), sharing an :class:`AsyncZooKeeperBackend`'s session and,
    unless given, its namespace."""

    max_value_size = ZooKeeperStore.max_value_size

    def __init__(self, backend: AsyncZooKeeperBackend, *, namespace: str | None = None) -> None:
        if not isinstance(backend, AsyncZooKeeperBackend):
            raise ConfigurationError(f"AsyncZooKeeperStore needs an AsyncZooKeeperBackend, not "
                                     f"{type(backend).__name__}")
        self._requests = backend._requests
        self._client = backend._session.client
        self._paths = Paths.of(backend.chroot, backend.namespace if namespace is None else namespace)
        self._seen = Seen()

    async def _run(self, steps: Generator[Step, Any, Any]) -> Any:
        run = StepRun(steps)
        while (step := run.next()) is not None:
            try:
                run.reply = await self._requests.request(step.what, functools.partial(step.start, self._client),
                                                         idempotent=step.idempotent)
            except OutcomeUnknown:
                run.reply = LOST
        return run.outcome

    async def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        outcome: FencedOutcome = await self._run(fenced_steps(self._paths, resource, key, token, strict, value,
                                                              self._seen))
        return outcome

    async def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        outcome: FencedOutcome = await self._run(fenced_steps(self._paths, resource, key, token, strict, None,
                                                              self._seen))
        return outcome

    async def plain_write(self, resource: str, key: str, value: bytes) -> None:
        await self._run(plain_write_steps(self._paths, resource, key, value, self._seen))

    async def plain_read(self, resource: str, key: str) -> bytes | None:
        value: bytes | None = await self._run(plain_read_steps(self._paths, resource, key))
        return value

    async def highest_token(self, resource: str) -> int | None:
        highest: int | None = await self._run(highest_steps(self._paths, resource))
        return highest
