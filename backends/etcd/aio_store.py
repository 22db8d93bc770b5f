"""Fencing inside etcd for asyncio: :class:`AsyncEtcdStore`, the requests and answers of
:class:`.store.EtcdStore` sent through an :class:`.aio_backend.AsyncEtcdBackend`'s
connection."""

from __future__ import annotations

import logging

from etcd3 import etcdrpc

from fencing_coord.aio.gate import AsyncStore
from fencing_coord.errors import InvalidArgumentType
from fencing_coord.spi import ROOT
from fencing_coord.stores.base import FencedOutcome

from .aio_backend import AsyncEtcdBackend
from .store import fenced_outcome, fenced_request, prepare_request, resource_keys, token_key_gone
from .wire import put, range_op, range_request

__all__ = ["AsyncEtcdStore"]

_log = logging.getLogger(__name__)


class AsyncEtcdStore(AsyncStore):
    """Resources in etcd (the keys and transactions of ``EtcdStore``), sharing an
    :class:`AsyncEtcdBackend`'s connection and, unless given, its namespace."""

    def __init__(self, backend: AsyncEtcdBackend, *, namespace: str | None = None) -> None:
        if not isinstance(backend, AsyncEtcdBackend):
            raise InvalidArgumentType(f"AsyncEtcdStore needs an AsyncEtcdBackend, not {type(backend).__name__}")
        self._conn = backend._conn
        self._root = f"{ROOT}/{namespace or backend.namespace}/resources/".encode()
        self._ready: set[str] = set()

    def _keys(self, resource: str, key: str | None = None) -> tuple[bytes, bytes]:
        return resource_keys(self._root, resource, key)

    async def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        return await self._fenced(resource, key, token, strict, put(self._keys(resource, key)[1], value))

    async def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        return await self._fenced(resource, key, token, strict, range_op(range_request(self._keys(resource, key)[1])))

    async def _fenced(self, resource: str, key: str, token: int, strict: bool, operation: object) -> FencedOutcome:
        token_key, request, is_read = fenced_request(self._keys(resource, key)[0], token, strict, operation)
        for _ in range(2):
            if resource not in self._ready:
                await self._conn.txn(prepare_request(token_key))
                self._ready.add(resource)
            outcome = fenced_outcome(await self._conn.txn(request, idempotent=is_read), is_read)
            if outcome is not None:
                return outcome
            self._ready.discard(resource)  # the token key was deleted behind our back
        raise token_key_gone(token_key, resource)

    async def plain_write(self, resource: str, key: str, value: bytes) -> None:
        await self._conn.call("KV", "Put", etcdrpc.PutRequest(key=self._keys(resource, key)[1], value=value))

    async def plain_read(self, resource: str, key: str) -> bytes | None:
        kvs = await self._conn.range(range_request(self._keys(resource, key)[1]))
        return kvs[0].value if kvs else None

    async def highest_token(self, resource: str) -> int | None:
        kvs = await self._conn.range(range_request(self._keys(resource)[0]))
        return int(kvs[0].value) if kvs and kvs[0].value else None
