"""Requests that arrive together go through the model together.

One worker task takes the first waiting request, gathers the ones that arrive within ``wait_ms`` (up to
``max_batch`` files), and runs them as one batch in a single inference thread, so the event loop keeps accepting
and decoding uploads meanwhile. While a batch runs, new requests queue up and form the next one. Each request
awaits its own future. The queue is bounded: when ``queue_size`` requests wait, ``submit`` raises ``Busy`` (the
service answers 503).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from abhinaya.serve.predictor import ItemResult, ServeItem


class Busy(RuntimeError):
    """The queue is full."""


class Stopped(RuntimeError):
    """The service stopped before the request was answered."""


@dataclass
class BatchStats:
    """Counters shown by ``GET /health``: requests and files answered, batches run, the largest batch (files), how
    many requests shared their batch with another one, requests refused because the queue was full, seconds spent
    in the model."""

    requests: int = 0
    files: int = 0
    batches: int = 0
    largest_batch: int = 0
    batched_requests: int = 0
    refused_busy: int = 0
    failed_batches: int = 0
    model_seconds: float = 0.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["model_seconds"] = round(self.model_seconds, 3)
        return out


@dataclass
class _Job:
    items: list[ServeItem]
    future: asyncio.Future


class Batcher:
    """Batches ``predict(items) -> results`` calls (see the module docstring)."""

    def __init__(
        self,
        predict: Callable[[Sequence[ServeItem]], list[ItemResult]],
        *,
        max_batch: int = 8,
        wait_ms: float = 5.0,
        queue_size: int = 64,
    ):
        if max_batch < 1 or queue_size < 1 or wait_ms < 0:
            raise ValueError("max_batch and queue_size must be at least 1, wait_ms at least 0")
        self.predict = predict
        self.max_batch = int(max_batch)
        self.wait = float(wait_ms) / 1000.0
        self.queue_size = int(queue_size)
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._carry: _Job | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def waiting(self) -> int:
        return (self._queue.qsize() if self._queue is not None else 0) + (self._carry is not None)

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abhinaya-inference")
        self._task = asyncio.create_task(self._run(), name="abhinaya-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        pending = [self._carry] if self._carry is not None else []
        self._carry = None
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(Stopped("the service is stopping"))
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def submit(self, items: list[ServeItem]) -> asyncio.Future:
        """Queue one request's items; its future gets one ``ItemResult`` per item. ``Busy`` when the queue is full."""
        if self._queue is None or self._task is None:
            raise Stopped("the service is not running")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Job(list(items), future))
        except asyncio.QueueFull:
            self.stats.refused_busy += 1
            raise Busy(f"{self.waiting} requests are waiting; retry later") from None
        return future

    async def _next(self, timeout: float | None) -> _Job | None:
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return None

    async def _gather(self) -> list[_Job]:
        """The next batch: the first waiting job, then whatever arrives within the wait, up to ``max_batch`` files
        (a job with more files than that runs alone). Jobs whose client has gone are dropped."""
        loop = asyncio.get_running_loop()
        jobs: list[_Job] = []
        count = 0
        deadline = None
        while True:
            timeout = None if deadline is None else deadline - loop.time()
            job = await self._next(timeout)
            if job is None:
                break
            if job.future.done():  # cancelled by its handler
                continue
            if jobs and count + len(job.items) > self.max_batch:
                self._carry = job
                break
            jobs.append(job)
            count += len(job.items)
            if count >= self.max_batch:
                break
            if deadline is None:
                deadline = loop.time() + self.wait
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            if not jobs:
                continue
            items = [item for job in jobs for item in job.items]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.predict, items)
                if len(results) != len(items):
                    raise RuntimeError(f"the model answered {len(results)} of {len(items)} files")
            except asyncio.CancelledError:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(Stopped("the service is stopping"))
                raise
            except Exception as err:  # noqa: BLE001 - one failed batch must not end the service
                self.stats.failed_batches += 1
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            finally:
                self.stats.model_seconds += time.perf_counter() - started
            self.stats.batches += 1
            self.stats.requests += len(jobs)
            self.stats.files += len(items)
            self.stats.largest_batch = max(self.stats.largest_batch, len(items))
            if len(jobs) > 1:
                self.stats.batched_requests += len(jobs)
            start = 0
            for job in jobs:
                part = results[start : start + len(job.items)]
                start += len(job.items)
                if not job.future.done():
                    job.future.set_result(part)


__all__ = ["BatchStats", "Batcher", "Busy", "Stopped"]
