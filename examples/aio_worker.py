"""An asyncio worker in the style of an aiohttp or FastAPI background task: the README's
asyncio quickstart, runnable (``python examples/aio_worker.py``, on memory:// and SQLite).

Several workers share a job queue; each job is done under its own lock, and its result is
written through a fenced resource with the grant's token, so a worker that lost its lock
(paused past its TTL) can never overwrite a newer result. In a web application, start
the workers in the lifespan and cancel them on shutdown: cancelling leaves nothing queued
or held (see the README's cancellation rules).
"""

from __future__ import annotations

import asyncio
import sys

import fencing_coord as fc


async def compute(job: str) -> bytes:
    await asyncio.sleep(0.01)  # stands for the real work (an HTTP call, a query, ...)
    return f"result of {job}".encode()


async def worker(backend: fc.aio.AsyncLockBackend, resource: fc.aio.AsyncFencedResource,
                 jobs: asyncio.Queue[str]) -> None:
    while True:
        job = await jobs.get()
        try:
            async with backend.lock(f"job:{job}", timeout=30) as grant:
                result = await compute(job)
                (await resource.write("jobs", job, result, token=grant.token)).raise_for_status()
        except fc.LockTimeout:
            await jobs.put(job)  # somebody else is on it: later
        finally:
            jobs.task_done()


async def run_jobs(url: str, db: str, names: list[str], workers: int = 3) -> dict[str, bytes | None]:
    """Do ``names`` with ``workers`` workers; return each job's stored result."""
    async with await fc.aio.connect(url, ttl=10) as backend, await fc.aio.AsyncSQLiteStore.open(db) as store:
        resource = fc.aio.AsyncFencedResource(store)
        jobs: asyncio.Queue[str] = asyncio.Queue()
        for name in names:
            jobs.put_nowait(name)
        tasks = [asyncio.create_task(worker(backend, resource, jobs)) for _ in range(workers)]
        await jobs.join()
        for task in tasks:  # shutdown: cancelling a worker leaves nothing queued or held
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {name: await resource.read("jobs", name) for name in names}


if __name__ == "__main__":
    print(asyncio.run(run_jobs(sys.argv[1] if len(sys.argv) > 1 else "memory://example", "aio-worker.db",
                               [f"j{i}" for i in range(5)])))
