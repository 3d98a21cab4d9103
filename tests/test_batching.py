"""serving/batching.py: concurrent requests share calls, each gets its own results, failures reach everyone."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serving.batching import GreedyBatcher


class SlowEcho:
    """A predict function that records its calls and can be held until released."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> list[str]:
        self.gate.wait(5)
        self.calls.append(list(texts))
        if self.fail_on in texts:
            raise RuntimeError(f"cannot score {self.fail_on}")
        return [t.upper() for t in texts]


async def _wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def test_requests_queued_during_a_call_share_the_next_one() -> None:
    predict = SlowEcho()
    batcher = GreedyBatcher(predict)

    async def scenario() -> list[list[str]]:
        predict.gate.clear()
        first = asyncio.create_task(batcher.submit(["a"]))
        await _wait_for(lambda: batcher._started and not batcher._queue)  # "a" is being scored
        rest = [asyncio.create_task(batcher.submit(texts)) for texts in (["b", "c"], ["d"], ["e", "f", "g"])]
        await asyncio.sleep(0.05)
        predict.gate.set()
        return [await first, *[await r for r in rest]]

    results = asyncio.run(scenario())
    batcher.close()
    assert results == [["A"], ["B", "C"], ["D"], ["E", "F", "G"]]
    assert predict.calls == [["a"], ["b", "c", "d", "e", "f", "g"]]
    assert (batcher.stats.calls, batcher.stats.requests, batcher.stats.posts) == (2, 4, 7)


def test_a_call_holds_at_most_max_posts_but_a_bigger_request_still_runs() -> None:
    predict = SlowEcho()
    batcher = GreedyBatcher(predict, max_posts=3)

    async def scenario() -> list[list[str]]:
        predict.gate.clear()
        first = asyncio.create_task(batcher.submit(["x"]))
        await _wait_for(lambda: batcher._started and not batcher._queue)
        rest = [asyncio.create_task(batcher.submit(t)) for t in (["a", "b"], ["c"], ["d"], ["e", "f", "g", "h"])]
        await asyncio.sleep(0.05)
        predict.gate.set()
        return [await first, *[await r for r in rest]]

    results = asyncio.run(scenario())
    batcher.close()
    assert results == [["X"], ["A", "B"], ["C"], ["D"], ["E", "F", "G", "H"]]
    assert predict.calls == [["x"], ["a", "b", "c"], ["d"], ["e", "f", "g", "h"]]


def test_a_failed_call_fails_every_request_in_it_and_the_next_call_still_runs() -> None:
    predict = SlowEcho(fail_on="bad")
    batcher = GreedyBatcher(predict)

    async def scenario() -> tuple[list[object], list[str]]:
        predict.gate.clear()
        first = asyncio.create_task(batcher.submit(["ok"]))
        await _wait_for(lambda: batcher._started and not batcher._queue)
        shared = [asyncio.create_task(batcher.submit(t)) for t in (["bad"], ["fine"])]
        await asyncio.sleep(0.05)
        predict.gate.set()
        await first
        outcomes = await asyncio.gather(*shared, return_exceptions=True)
        return outcomes, await batcher.submit(["later"])

    outcomes, later = asyncio.run(scenario())
    batcher.close()
    assert all(isinstance(o, RuntimeError) and "cannot score bad" in str(o) for o in outcomes)
    assert later == ["LATER"]


def test_a_request_cancelled_while_queued_is_not_scored() -> None:
    predict = SlowEcho()
    batcher = GreedyBatcher(predict)

    async def scenario() -> list[str]:
        predict.gate.clear()
        first = asyncio.create_task(batcher.submit(["first"]))
        await _wait_for(lambda: batcher._started and not batcher._queue)
        gone = asyncio.create_task(batcher.submit(["gone"]))
        kept = asyncio.create_task(batcher.submit(["kept"]))
        await asyncio.sleep(0.02)
        gone.cancel()
        await asyncio.sleep(0.02)
        predict.gate.set()
        await first
        return await kept

    assert asyncio.run(scenario()) == ["KEPT"]
    batcher.close()
    assert predict.calls == [["first"], ["kept"]]


def test_max_posts_must_be_positive_and_a_closed_batcher_refuses_work() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GreedyBatcher(SlowEcho(), max_posts=0)
    batcher = GreedyBatcher(SlowEcho())
    assert asyncio.run(batcher.submit(["one"])) == ["ONE"]
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(batcher.submit(["two"]))
