"""Dynamic batching: concurrent requests grouped into one forward pass.

Each request :meth:`Batcher.submit`\\ s one item to a bounded :class:`asyncio.Queue`; one
consumer task takes the first waiting item, then more until it holds ``max_batch`` items
or ``max_wait_s`` has passed since the first, and runs ``run_batch(items)`` in a worker
thread of its own (so the event loop keeps accepting requests while the model runs, and
forward passes never wait behind request decoding in the default thread pool).  Each caller
gets its own row of the result.  A full queue refuses at once with :class:`QueueFull`
(the server answers 503 with ``Retry-After``): load beyond capacity is shed, not queued
without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """The batcher's queue holds ``max_queue`` waiting requests already."""


class Batcher(Generic[T, R]):
    """Group concurrent :meth:`submit` calls into calls of ``run_batch``.

    Args:
        run_batch: items -> one result per item, in order (run in a worker thread).
        max_batch: the most items in one call (1: no batching).
        max_wait_s: how long the first item of a batch waits for more (seconds).
        max_queue: the most items waiting; one more raises :class:`QueueFull`.
        name: for messages.

    Attributes:
        batch_sizes: how many calls of ``run_batch`` had each size.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        name: str = "batcher",
    ) -> None:
        for key, value, low in (("max_batch", max_batch, 1), ("max_queue", max_queue, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Batcher: '{key}' must be an int >= {low}, got {value!r}.")
        if not max_wait_s >= 0:
            raise ValueError(f"Batcher: 'max_wait_s' must be >= 0, got {max_wait_s!r}.")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = float(max_wait_s)
        self.max_queue = max_queue
        self.name = name
        self.batch_sizes: Counter[int] = Counter()
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def depth(self) -> int:
        """Items waiting (not yet taken into a batch)."""
        return 0 if self._queue is None else self._queue.qsize()

    def start(self) -> None:
        """Start the consumer on the running event loop (idempotent)."""
        if self._task is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=self.name)
            self._queue = asyncio.Queue(maxsize=self.max_queue)
            self._task = asyncio.get_running_loop().create_task(self._consume())

    async def stop(self) -> None:
        """Stop the consumer; waiting callers get ``RuntimeError``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._queue is not None:
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(RuntimeError(f"{self.name} stopped"))
            self._queue = None

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result; :class:`QueueFull` when full."""
        self.start()
        assert self._queue is not None  # set by start()
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, fut))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.name}: {self.max_queue} requests are waiting already") from None
        return await fut

    async def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The next batch: the first waiting item, then up to ``max_batch`` in all."""
        assert self._queue is not None
        queue = self._queue
        batch = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def _consume(self) -> None:
        while True:
            batch = await self._take()
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            self.batch_sizes[len(live)] += 1
            try:
                loop = asyncio.get_running_loop()
                items = [item for item, _ in live]
                results = await loop.run_in_executor(self._executor, self.run_batch, items)
                if len(results) != len(live):
                    raise RuntimeError(
                        f"{self.name}: run_batch returned {len(results)} results for "
                        f"{len(live)} items"
                    )
            except Exception as exc:  # every caller of the batch gets the error
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
