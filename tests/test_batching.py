"""serving/batching.py: concurrent requests share calls, each gets its own results, failures reach everyone."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from givetake.serving.batching import GreedyBatcher


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


def _queued_behind_a_call(batcher: GreedyBatcher, predict: SlowEcho, texts: list[list[str]]) -> list[list[str]]:
    """The results of ["x"], then of ``texts`` sent while the call scoring ["x"] is held; closes the batcher."""

    async def scenario() -> list[list[str]]:
        predict.gate.clear()
        first = asyncio.create_task(batcher.submit(["x"]))
        await _wait_for(lambda: batcher._started and not batcher._queue)
        rest = [asyncio.create_task(batcher.submit(t)) for t in texts]
        await asyncio.sleep(0.05)
        predict.gate.set()
        return [await first, *[await r for r in rest]]

    results = asyncio.run(scenario())
    batcher.close()
    return results


def test_a_call_holds_at_most_max_posts_and_splits_only_big_requests() -> None:
    predict = SlowEcho()
    batcher = GreedyBatcher(predict, max_posts=3, min_piece=2)
    results = _queued_behind_a_call(batcher, predict, [["a", "b"], ["c"], ["d", "e"], ["f", "g", "h", "i"]])
    assert results == [["X"], ["A", "B"], ["C"], ["D", "E"], ["F", "G", "H", "I"]]
    # The 4-post request is not cut for the one post of room left beside ["d", "e"] (a piece of 1 <
    # min_piece), but is cut at max_posts when it leads a call, whatever the pieces' size.
    assert predict.calls == [["x"], ["a", "b", "c"], ["d", "e"], ["f", "g", "h"], ["i"]]


def test_requests_merge_up_to_merge_posts_but_one_request_is_not_cut_to_it() -> None:
    predict = SlowEcho()
    batcher = GreedyBatcher(predict, max_posts=256, merge_posts=3)
    results = _queued_behind_a_call(batcher, predict, [["a"], ["b"], ["c"], ["d"], ["e", "f", "g", "h", "i"], ["j"]])
    assert results == [["X"], ["A"], ["B"], ["C"], ["D"], ["E", "F", "G", "H", "I"], ["J"]]
    # One-post requests in order, three to a call; the five-post request whole, in a call of its own.
    assert predict.calls == [["x"], ["a", "b", "c"], ["d"], ["e", "f", "g", "h", "i"], ["j"]]


def test_runners_score_their_shares_of_a_big_request_side_by_side() -> None:
    both_in = threading.Barrier(2, timeout=5)  # passes only if two calls run at the same time
    calls: list[list[str]] = []

    def predict(texts: list[str]) -> list[str]:
        calls.append(list(texts))
        both_in.wait()
        return [t.upper() for t in texts]

    batcher = GreedyBatcher(predict, runners=2, min_piece=16)
    texts = [f"post {i}" for i in range(40)]
    assert asyncio.run(batcher.submit(texts)) == [t.upper() for t in texts]  # in order, whole
    batcher.close()
    assert sorted(len(c) for c in calls) == [20, 20]
    assert (batcher.stats.calls, batcher.stats.posts) == (2, 40)


def test_a_request_too_small_to_split_goes_to_one_runner_and_run_blocks_for_threads() -> None:
    predict = SlowEcho()
    batcher = GreedyBatcher(predict, runners=2, min_piece=16)
    texts = [f"post {i}" for i in range(20)]  # halves of 10 would be below min_piece
    out: list[list[str]] = []
    worker = threading.Thread(target=lambda: out.append(batcher.run(texts)))
    worker.start()
    worker.join(5)
    batcher.close()
    assert out == [[t.upper() for t in texts]]
    assert predict.calls == [texts]
    assert batcher.run([]) == []


def test_a_failed_piece_fails_its_request_once_and_the_other_piece_is_ignored() -> None:
    def predict(texts: list[str]) -> list[str]:
        if "post 0" in texts:
            raise RuntimeError("cannot score post 0")
        if "post 7" in texts:
            time.sleep(0.2)  # still running when the caller has had its error and closed its event loop
            raise RuntimeError("cannot score this piece either")
        return [t.upper() for t in texts]

    batcher = GreedyBatcher(predict, runners=2, min_piece=2)
    with pytest.raises(RuntimeError, match="cannot score post 0"):
        asyncio.run(batcher.submit([f"post {i}" for i in range(8)]))
    time.sleep(0.4)
    assert all(thread.is_alive() for thread in batcher._threads)  # neither runner died of the late result
    assert asyncio.run(batcher.submit(["after"])) == ["AFTER"]
    batcher.close()


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


def test_a_failing_on_batch_callback_does_not_stop_the_runner() -> None:
    def on_batch(requests: int, posts: int) -> None:
        raise RuntimeError("metrics are broken")

    batcher = GreedyBatcher(SlowEcho(), on_batch=on_batch)
    assert asyncio.run(batcher.submit(["one"])) == ["ONE"]
    # The same runner, still alive (were it dead, nothing would answer: the wait would time out).
    assert asyncio.run(asyncio.wait_for(batcher.submit(["two"]), 5)) == ["TWO"]
    assert all(thread.is_alive() for thread in batcher._threads)
    batcher.close()


def test_settings_must_be_positive_and_a_closed_batcher_refuses_work() -> None:
    for bad in ({"max_posts": 0}, {"runners": 0}, {"min_piece": 0}, {"merge_posts": 0}):
        with pytest.raises(ValueError, match="at least 1"):
            GreedyBatcher(SlowEcho(), **bad)  # type: ignore[arg-type]
    batcher = GreedyBatcher(SlowEcho())
    assert asyncio.run(batcher.submit(["one"])) == ["ONE"]
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(batcher.submit(["two"]))


def test_engine_threads_split_a_big_call_and_keep_each_text_s_answer(trained_run: Path) -> None:
    from givetake.core.predictor import Predictor
    from givetake.serving.batching import EngineThreads

    texts = [
        f"post {i}: our new shop opens on Monday, come along!" if i % 3 else f"what do you think of {i}?"
        for i in range(40)
    ]
    reference = Predictor(trained_run, engine="onnx").predict(texts)
    engines = EngineThreads(Predictor(trained_run, engine="onnx", threads=2, calls=2), max_posts=512)
    try:
        got = engines.predict(texts)
        assert engines.batcher.stats.calls == 2  # 20 texts to each engine thread
        assert [g["labels"] for g in got] == [r["labels"] for r in reference]
        for g, r in zip(got, reference, strict=True):
            assert all(abs(g["scores"][k] - r["scores"][k]) < 1e-3 for k in r["scores"])
        assert engines.labels == Predictor(trained_run, engine="onnx").labels
        assert engines.model_dir.samefile(trained_run)
    finally:
        engines.close()


def test_a_swap_takes_effect_between_calls_and_never_mixes_models() -> None:
    old, new = SlowEcho(), SlowEcho()
    batcher = GreedyBatcher(old, max_posts=4, min_piece=1)

    async def scenario() -> list[tuple[object, list[str]]]:
        old.gate.clear()
        first = asyncio.create_task(batcher.submit_traced(["a"]))
        await _wait_for(lambda: batcher._started and not batcher._queue)  # "a" is being scored by old
        # Queued before the swap: "b".."f" (split over two calls of at most 4), all for the old model.
        before = asyncio.create_task(batcher.submit_traced(["b", "c", "d", "e", "f"]))
        await asyncio.sleep(0.02)
        assert batcher.swap(new) is old
        after = asyncio.create_task(batcher.submit_traced(["g", "h"]))
        await asyncio.sleep(0.02)
        old.gate.set()
        return [await first, await before, await after]

    results = asyncio.run(scenario())
    batcher.close()
    assert results == [(old, ["A"]), (old, ["B", "C", "D", "E", "F"]), (new, ["G", "H"])]
    # Every piece of the request queued before the swap went to the old model; no call mixed the two.
    assert old.calls == [["a"], ["b", "c", "d", "e"], ["f"]]
    assert new.calls == [["g", "h"]]
