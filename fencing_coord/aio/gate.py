"""The gate for asyncio: :class:`AsyncFencedResource` over an :class:`AsyncStore`.

The rules, modes (enforce, shadow, canary, off), ``require_token``, metrics, audit
records, argument checks and results are those of :class:`fencing_coord.FencedResource`:
both run the decisions of :class:`fencing_coord.decisions.GateRules`; here the store's
operations are awaited. A store's one obligation is the same: the token check and the
write are one atomic step of the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Self

from ..audit import AuditNote
from ..bound import fence_of
from ..decisions import GateRules, WriteResult, arun_steps
from ..gate import Bytes, check_strict
from ..observability import Metrics
from ..rollout import GateMode
from ..stores.base import MAX_VALUE_SIZE, FencedOutcome
from ..validation import check_name

if TYPE_CHECKING:
    from ..election import TermView
    from ..grant import Grant

__all__ = ["AsyncBoundResource", "AsyncFencedResource", "AsyncStore"]


class AsyncStore(ABC):
    """Storage behind an :class:`AsyncFencedResource`: the methods of
    :class:`fencing_coord.stores.Store`, as coroutines that never block the loop. Usable
    as ``async with`` (closes on exit)."""

    max_value_size: ClassVar[int] = MAX_VALUE_SIZE
    #: True when the store writes each :meth:`gated_write` decision given a note to an
    #: audit table, in the decision's transaction (as :attr:`Store.audit`).
    audit: bool = False

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

    async def gated_write(self, resource: str, key: str, value: bytes, token: int, strict: bool, *,
                          shadow: bool = False, note: AuditNote | None = None) -> FencedOutcome:
        """A fenced write as the gate's mode asks for it (see :meth:`Store.gated_write`):
        with ``shadow``, a refused token's value is stored all the same and the highest
        token left as it is. This default is the blocking base class's two steps."""
        outcome = await self.fenced_write(resource, key, value, token, strict)
        if shadow and not outcome.accepted:
            # Correct in two steps: a token refused then stays refused (it only grows).
            await self.plain_write(resource, key, value)
        return outcome

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has none."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


class AsyncFencedResource(GateRules):
    """Resources in ``store`` that admit only the newest holder's token: the arguments,
    rules and results of :class:`fencing_coord.FencedResource`, methods awaited."""

    store: AsyncStore

    def __init__(self, store: AsyncStore, strict: bool = False, *, mode: GateMode | str = GateMode.ENFORCE,
                 canary: Iterable[str] = (), canary_fraction: float = 0.0, require_token: bool = False,
                 metrics: Metrics | None = None) -> None:
        check_strict(store, AsyncStore, "fencing_coord.aio.AsyncStore", strict)
        self.store = store
        self._configure(strict, mode, canary, canary_fraction, require_token, metrics)

    async def write(self, name: str, key: str, value: Bytes, *, token: int, holder: str | None = None) -> WriteResult:
        """Store ``value`` under ``name``/``key`` if ``token`` is admitted (see
        :meth:`FencedResource.write <fencing_coord.FencedResource.write>`)."""
        return await arun_steps(self._write_steps(name, key, value, token, holder), self.store)

    async def write_without_token(self, name: str, key: str, value: Bytes, *,
                                  holder: str | None = None) -> WriteResult:
        """A write that carries no token (see :meth:`FencedResource.write_without_token
        <fencing_coord.FencedResource.write_without_token>`)."""
        return await arun_steps(self._write_without_token_steps(name, key, value, holder), self.store)

    async def read(self, name: str, key: str, *, token: int | None = None, holder: str | None = None) -> bytes | None:
        """The value, or None; with ``token`` a fenced read (StaleTokenError if refused
        where the gate enforces)."""
        return await arun_steps(self._read_steps(name, key, token, holder), self.store)

    async def highest_token(self, name: str) -> int | None:
        """The highest token resource ``name`` has admitted, or None."""
        return await self.store.highest_token(check_name(name, "resource name"))

    def bind(self, holder: Grant | TermView, resource: str | None = None) -> AsyncBoundResource:
        """This resource's ``resource`` (default: the grant's lock name, or the term's
        election name) with ``holder``'s token filled into every call."""
        token, name = fence_of(holder, resource)
        return AsyncBoundResource(self, token, name)


class AsyncBoundResource:
    """One resource of an :class:`AsyncFencedResource` under one token (as
    :class:`fencing_coord.BoundResource`): every call is the resource's own."""

    __slots__ = ("name", "resource", "token")

    def __init__(self, resource: AsyncFencedResource, token: int, name: str) -> None:
        self.resource, self.token, self.name = resource, token, name

    def __repr__(self) -> str:
        return f"AsyncBoundResource({self.name!r}, token={self.token}, {self.resource!r})"

    async def write(self, key: str, value: Bytes) -> WriteResult:
        """A fenced write under the bound token: a :class:`WriteResult`."""
        return await self.resource.write(self.name, key, value, token=self.token)

    async def read(self, key: str) -> bytes | None:
        """A fenced read under the bound token; StaleTokenError if refused."""
        return await self.resource.read(self.name, key, token=self.token)

    async def plain_read(self, key: str) -> bytes | None:
        """An unfenced read: admits nothing and raises no token."""
        return await self.resource.read(self.name, key)

    async def highest_token(self) -> int | None:
        """The highest token the resource has admitted, or None."""
        return await self.resource.highest_token(self.name)
