"""The asyncio base class's own rules, checked on memory:// (every async backend
inherits them): a grant or term won while ``close()`` ran is given back, and the caller
gets InvalidArgument ("closed"), not a grant of a closed backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import fencing_coord as fc
from fencing_coord.backends.aio_memory import AsyncMemoryBackend
from fencing_coord.grant import Grant
from fencing_coord.testing import FakeClock


class _ClosedMidAcquire(AsyncMemoryBackend):  # type: ignore[misc]  # backends/ is untyped to mypy here
    """Closes itself right after the table granted the lock or the term."""

    async def _acquire(self, name: str, deadline: float | None, on_queued: Callable[[], object] | None) -> Any:
        grant: Grant | None = await super()._acquire(name, deadline, on_queued)
        await self.close()
        return grant

    async def _campaign(self, name: str, value: bytes, deadline: float | None,
                        on_queued: Callable[[], object] | None) -> Any:
        grant: Grant | None = await super()._campaign(name, value, deadline, on_queued)
        await self.close()
        return grant


@pytest.mark.parametrize("how", ["acquire", "try_acquire", "campaign"])
def test_close_racing_an_acquisition_gives_the_grant_back(how: str) -> None:
    table = f"aio-close-race-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        racing = _ClosedMidAcquire(table, clock=FakeClock())
        attempts = {"acquire": lambda: racing.acquire("x", timeout=0), "try_acquire": lambda: racing.try_acquire("x"),
                    "campaign": lambda: racing.election("x").campaign(timeout=0)}
        with pytest.raises(fc.InvalidArgument, match="closed"):
            await attempts[how]()
        async with await fc.aio.connect(f"memory://{table}", clock=FakeClock()) as other:
            if how == "campaign":
                term = await other.election("x").campaign(timeout=0)
                assert await term.resign() is True
            else:
                taken = await other.try_acquire("x")
                assert taken is not None, "the closed backend's grant was never released"

    asyncio.run(main())
