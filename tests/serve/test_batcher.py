"""The batcher groups concurrent submissions into one call and sheds load when full."""

from __future__ import annotations

import asyncio
import threading

import pytest

from polymodal.serve.batcher import Batcher, QueueFull


def test_concurrent_submissions_make_one_call_with_every_row() -> None:
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [x * 10 for x in items]

    async def main() -> list[int]:
        # a wait far longer than the test: the batch closes because it is full, not by time
        b: Batcher[int, int] = Batcher(run, max_batch=5, max_wait_s=60, max_queue=10)
        out = await asyncio.gather(*(b.submit(i) for i in range(5)))
        await b.stop()
        assert b.batch_sizes == {5: 1}
        return list(out)

    assert asyncio.run(main()) == [0, 10, 20, 30, 40]
    assert calls == [[0, 1, 2, 3, 4]]


def test_max_batch_splits_and_each_caller_gets_its_row() -> None:
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [-x for x in items]

    async def main() -> list[int]:
        b: Batcher[int, int] = Batcher(run, max_batch=3, max_wait_s=60, max_queue=10)
        out = await asyncio.gather(*(b.submit(i) for i in range(6)))
        await b.stop()
        return list(out)

    assert asyncio.run(main()) == [0, -1, -2, -3, -4, -5]
    assert calls == [[0, 1, 2], [3, 4, 5]]


def test_a_full_queue_refuses_and_an_error_reaches_every_caller() -> None:
    entered, release = threading.Event(), threading.Event()

    def run(items: list[int]) -> list[int]:
        entered.set()
        release.wait(30)
        if 99 in items:
            raise ValueError("bad row 99")
        return items

    async def main() -> None:
        b: Batcher[int, int] = Batcher(run, max_batch=1, max_wait_s=0, max_queue=2)
        first = asyncio.ensure_future(b.submit(1))
        await asyncio.to_thread(entered.wait, 30)  # the worker holds item 1
        waiting = [asyncio.ensure_future(b.submit(x)) for x in (2, 99)]
        await asyncio.sleep(0)  # let both reach the queue
        assert b.depth == 2
        with pytest.raises(QueueFull, match="2 requests are waiting"):
            await b.submit(4)
        release.set()
        assert await first == 1
        assert await waiting[0] == 2
        with pytest.raises(ValueError, match="bad row 99"):
            await waiting[1]
        await b.stop()

    asyncio.run(main())


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="'max_batch' must be an int >= 1, got 0"):
        Batcher(list, max_batch=0)
    with pytest.raises(ValueError, match="'max_wait_s' must be >= 0"):
        Batcher(list, max_wait_s=-1)
