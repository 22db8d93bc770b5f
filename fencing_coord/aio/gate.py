"""The gate for asyncio: :class:`AsyncFencedResource` over an :class:`AsyncStore`.

The rules, argument checks and results are those of :class:`fencing_coord.FencedResource`
(shared functions of :mod:`fencing_coord.gate`); only the store's operations are
awaited. A store's one obligation is the same: the token check and the write are one
atomic step of the store."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, Self

from ..gate import WriteResult, check_operation, check_strict, check_value, read_value, result_of
from ..stores.base import MAX_VALUE_SIZE, FencedOutcome
from ..validation import check_name

__all__ = ["AsyncFencedResource", "AsyncStore"]


class AsyncStore(ABC):
    """Storage behind an :class:`AsyncFencedResource`: the methods of
    :class:`fencing_coord.stores.Store`, as coroutines that never block the loop. Usable
    as ``async with`` (closes on exit)."""

    max_value_size: ClassVar[int] = MAX_VALUE_SIZE

    @abstractmethod
    async def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        ...

    @abstractmethod
    async def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome: ...

    @abstractmethod
    async def plain_write(self, resource: str, key: str, value: bytes) -> None: ...

    @abstractmethod
    async def plain_read(self, resource: str, key: str) -> bytes | None: ...

    @abstractmethod
    async def highest_token(self, resource: str) -> int | None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has none."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


class AsyncFencedResource:
    """Resources in ``store`` that admit only the newest holder's token (see
    :class:`fencing_coord.FencedResource` for the rules and what each method returns)."""

    def __init__(self, store: AsyncStore, strict: bool = False) -> None:
        check_strict(store, AsyncStore, "fencing_coord.aio.AsyncStore", strict)
        self.store = store
        self.strict = strict

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r}, strict={self.strict})"

    async def write(self, name: str, key: str, value: bytes | bytearray | memoryview, *, token: int) -> WriteResult:
        """Store ``value`` under ``name``/``key`` if ``token`` is admitted."""
        name = check_operation(name, key, token)
        outcome = await self.store.fenced_write(name, key, check_value(value, self.store.max_value_size), token,
                                                self.strict)
        return result_of(outcome, token, self.strict)

    async def read(self, name: str, key: str, *, token: int | None = None) -> bytes | None:
        """The value, or None; with ``token`` a fenced read (StaleTokenError if refused)."""
        if token is None:
            return await self.store.plain_read(check_name(name, "resource name"), check_name(key, "key"))
        name = check_operation(name, key, token)
        return read_value(await self.store.fenced_read(name, key, token, self.strict), token, self.strict)

    async def highest_token(self, name: str) -> int | None:
        """The highest token resource ``name`` has admitted, or None."""
        return await self.store.highest_token(check_name(name, "resource name"))
