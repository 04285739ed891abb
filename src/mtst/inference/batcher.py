"""Dynamic batching: texts of concurrent requests share one forward pass.

A server that runs each request alone spends most of its time on tiny batches (a request often
carries one text); one that waits too long for company adds latency. The batcher collects the
texts of the requests that queued while the model was busy with the previous batch (and, with
`max_wait_s` above 0, those that arrive within it of the first), up to `max_batch_size` texts,
runs them as one call, and hands every request back exactly its own results, in its own
order. The call itself sorts by length (`predict` sorts its windows, `encode` its sentences), so
a batch pads to little.

A batch whose call fails is run again one request at a time, and only the requests that fail
alone get the error: one text the model cannot take (or a bug it triggers) must not fail the
requests that happened to arrive with it. The requests are checked before they are queued, so
this is the exception; a request that fails alone pays for one wasted batch.

Calls run one at a time on a single worker thread: the model's own intra-op threads already use
the cores, two batches at once would only fight over them, and the event loop stays free to
accept and parse the next requests meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

# kind ("predict", "encode", ...) and the texts of one batch -> one result per text, in order
RunFn = Callable[[str, list[str]], Sequence[Any]]


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """One queue per kind of call; a batch only ever holds jobs of one kind."""

    def __init__(
        self,
        run: RunFn,
        max_batch_size: int = 32,
        max_wait_s: float = 0.0,
        on_pending: Callable[[int], Any] | None = None,
        on_batch: Callable[[int], Any] | None = None,
    ) -> None:
        """`on_pending(delta)` is told each change of `pending` (a gauge's `inc`), and
        `on_batch(n)` the number of texts of each model call (a histogram's `observe`): a
        multi-process metrics store cannot read `pending` at scrape time."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.run, self.max_batch_size, self.max_wait_s = run, max_batch_size, max(0.0, max_wait_s)
        self.on_pending, self.on_batch = on_pending, on_batch
        self._queues: dict[str, asyncio.Queue[_Job]] = {}
        self._carry: dict[str, _Job | None] = {}
        self._tasks: list[asyncio.Task] = []
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # batches run so far
        self.pending = 0  # texts submitted and not answered yet

    def start(self, kinds: Sequence[str]) -> None:
        """Start one collector per kind; call from inside the running event loop."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtst-batch")
        for kind in kinds:
            self._queues[kind] = asyncio.Queue()
            self._carry[kind] = None
            self._tasks.append(asyncio.create_task(self._collect(kind), name=f"batcher-{kind}"))

    async def stop(self) -> None:
        """Stop collecting (the server has already answered every request in flight)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, kind: str, texts: list[str]) -> list[Any]:
        """The results for `texts`, computed in a batch with whatever else is waiting."""
        if not texts:
            return []
        future = asyncio.get_running_loop().create_future()
        self.pending += len(texts)
        if self.on_pending is not None:
            self.on_pending(len(texts))
        try:
            await self._queues[kind].put(_Job(list(texts), future))
            return await future
        finally:
            self.pending -= len(texts)
            if self.on_pending is not None:
                self.on_pending(-len(texts))

    async def _next_batch(self, kind: str) -> list[_Job]:
        queue = self._queues[kind]
        first = self._carry[kind] or await queue.get()
        self._carry[kind] = None
        jobs, size = [first], len(first.texts)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch_size:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if size + len(job.texts) > self.max_batch_size:
                self._carry[kind] = job  # starts the next batch: never split a request
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs

    async def _call(self, kind: str, texts: list[str]) -> Sequence[Any]:
        if self.on_batch is not None:
            self.on_batch(len(texts))
        results = await asyncio.get_running_loop().run_in_executor(
            self._executor, self.run, kind, texts
        )
        if len(results) != len(texts):
            raise RuntimeError(f"{kind} returned {len(results)} results for {len(texts)} texts")
        self.batches += 1
        return results

    async def _collect(self, kind: str) -> None:
        while True:
            jobs = [job for job in await self._next_batch(kind) if not job.future.done()]
            if not jobs:
                continue  # every client of this batch went away
            texts = [text for job in jobs for text in job.texts]
            try:
                results = await self._call(kind, texts)
            except Exception as err:
                if len(jobs) > 1:
                    await self._one_by_one(kind, jobs)
                elif not jobs[0].future.done():
                    jobs[0].future.set_exception(err)  # the request answers 500; serving goes on
                continue
            start = 0
            for job in jobs:
                if not job.future.done():  # a cancelled request simply drops its share
                    job.future.set_result(list(results[start : start + len(job.texts)]))
                start += len(job.texts)

    async def _one_by_one(self, kind: str, jobs: list[_Job]) -> None:
        """After a failed batch: each request alone, so that only the ones that fail get the error."""
        for job in jobs:
            if job.future.done():
                continue
            try:
                results = list(await self._call(kind, job.texts))
            except Exception as err:
                if not job.future.done():
                    job.future.set_exception(err)
                continue
            if not job.future.done():  # its client may have gone away meanwhile
                job.future.set_result(results)
