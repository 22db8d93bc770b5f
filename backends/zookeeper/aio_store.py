"""Fenced resources in ZooKeeper for asyncio: :class:`AsyncZooKeeperStore`, the nodes,
requests and compare-and-set steps (:func:`.store.fenced_steps`) of
:class:`.store.ZooKeeperStore`, carried out through an
:class:`.aio_backend.AsyncZooKeeperBackend`'s session."""

from __future__ import annotations

import functools
import logging

from kazoo.exceptions import NoNodeError

from fencing_coord.aio.gate import AsyncStore
from fencing_coord.errors import ConfigurationError
from fencing_coord.spi import ROOT
from fencing_coord.stores.base import FencedOutcome

from .aio_backend import AsyncZooKeeperBackend
from .names import segment
from .session import OutcomeUnknown
from .store import (
    CAS_FAILED,
    ConfirmNode,
    ReadNode,
    Resource,
    StepRun,
    ZooKeeperStore,
    confirm_request,
    fenced_steps,
    write_request,
)

__all__ = ["AsyncZooKeeperStore"]

_log = logging.getLogger(__name__)


class AsyncZooKeeperStore(AsyncStore):
    """Resources in ZooKeeper (one znode each, as :class:`ZooKeeperStore`), sharing an
    :class:`AsyncZooKeeperBackend`'s session and, unless given, its namespace."""

    max_value_size = ZooKeeperStore.max_value_size

    def __init__(self, backend: AsyncZooKeeperBackend, *, namespace: str | None = None) -> None:
        if not isinstance(backend, AsyncZooKeeperBackend):
            raise ConfigurationError(f"AsyncZooKeeperStore needs an AsyncZooKeeperBackend, not "
                                     f"{type(backend).__name__}")
        self._requests = backend._requests
        self._client = backend._session.client
        space = backend.namespace if namespace is None else namespace
        self._base = f"{backend.chroot}{ROOT}/{segment(space)}/resources"

    def _path(self, resource: str) -> str:
        return f"{self._base}/{segment(resource)}"

    async def _read(self, path: str) -> tuple[Resource, int | None]:
        try:
            data, stat = await self._requests.request(f"read {path}", functools.partial(self._client.get_async, path),
                                                      expected=(NoNodeError,))
        except NoNodeError:
            return Resource(None, {}, []), None
        return Resource.decode(path, bytes(data)), int(stat.version)

    async def _write(self, path: str, doc: Resource, version: int | None) -> bool:
        start, write_id = write_request(self._client, path, doc, version)
        try:
            await self._requests.request(f"write {path}", start, idempotent=False, expected=CAS_FAILED)
        except CAS_FAILED:
            return False
        except OutcomeUnknown:
            return write_id in (await self._read(path))[0].writes
        return True

    async def _fenced(self, resource: str, key: str, token: int, strict: bool, write: bytes | None) -> FencedOutcome:
        run = StepRun(fenced_steps(self._path(resource), key, token, strict, write))
        while (step := run.next()) is not None:
            if isinstance(step, ReadNode):
                run.reply = await self._read(step.path)
            elif isinstance(step, ConfirmNode):
                results = await self._requests.request(f"confirm {step.path}", functools.partial(
                    confirm_request, self._client, step.path, step.version))
                run.reply = bool(results) and results[0] is True
            else:
                run.reply = await self._write(step.path, step.doc, step.version)
        return run.outcome

    async def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        return await self._fenced(resource, key, token, strict, value)

    async def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        return await self._fenced(resource, key, token, strict, None)

    async def plain_write(self, resource: str, key: str, value: bytes) -> None:
        path = self._path(resource)
        doc, version = await self._read(path)
        doc.values[key] = value
        while not await self._write(path, doc, version):
            doc, version = await self._read(path)
            doc.values[key] = value

    async def plain_read(self, resource: str, key: str) -> bytes | None:
        return (await self._read(self._path(resource)))[0].values.get(key)

    async def highest_token(self, resource: str) -> int | None:
        path = self._path(resource)
        # sync() first: the answer reflects every write acknowledged before this call.
        await self._requests.request(f"sync {path}", functools.partial(self._client.sync_async, path))
        return (await self._read(path))[0].highest
