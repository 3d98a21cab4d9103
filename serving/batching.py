"""Greedy request batching for ``POST /classify``: run whatever is waiting as soon as an engine is free.

Concurrent requests queue here. ``runners`` engine threads each take a share of what is queued
(first come first served), score it in one call and hand each request its results; a request is
answered once all of its posts are scored. While calls run, new requests queue and form the next
ones. Nothing ever waits for a batch to fill: on a CPU, a request that arrives while an engine is
idle is best started at once, and one that arrives while all are busy has to wait for a call anyway.

Why several single-threaded engines rather than one using every core (``bench/http.py``, 2 cores,
int8 MiniLM, one post per request): ONNX Runtime's threads meet at a barrier after every operator,
and sleep there or spin; two calls side by side, one thread each, need neither. Measured in one
process on real posts, two such calls of 32 did 625 posts/s against 441 for one call of 32 on two
sleeping threads and 526 on two spinning ones. Through the server, with 32 clients: 411-425 posts/s
against 329 for one two-thread engine; with 8 clients 365 against 263; one client's p50 5.1 against
6.1 ms. (Later, cutting forward passes by cost, ``Predictor._batches``, took the server to 492-502.)
Waiting for fuller batches while another runner was busy was tried too: 307-321 against 386 posts/s.

Why not BentoML's adaptive batching (``@bentoml.api(batchable=True)``), measured the same way: its
dispatcher holds requests back to grow batches, by an amount learnt from the average wait of past
batches; under a steady load that wait feeds on itself and the server's CPU use stayed at 1.35 of 2
cores while 32 requests were queued (230-257 posts/s, 51-61% of the raw engine). After a burst it
kept waiting about 60 ms per request for seconds (single-post p50 62 ms instead of 7 ms).

Why calls merge at most ``merge_posts`` (the server: 16) posts of several requests: the tail. With
32 one-post clients a runner that frees up while the other is busy finds most of them queued and
took them all in one call of 20-30 posts (80-100 ms), so the requests behind it waited for two such
calls. Capping what is merged keeps calls short and the queue moving in order (bench/RESULTS.md,
"p99 at 32 clients": one-post requests p99 88 against 109 ms uncapped; 8 cut it to 82 but cost
a quarter of the throughput of 8-post requests, 16 costs an eighth). A single request's posts are
not cut to that cap: a request of 256 posts still goes in one call (or is split between idle runners).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from givetake.core.predictor import Predictor

logger = logging.getLogger(__name__)


class _Request:
    """One caller's texts, the results filled in as its pieces are scored, and where they go.

    ``future`` is an asyncio future of ``loop`` (a request from :meth:`GreedyBatcher.submit`), or a
    ``concurrent.futures.Future`` when ``loop`` is None (from :meth:`GreedyBatcher.run`). ``predict``
    is the batcher's model when the request was queued: all of its pieces are scored by it, even
    when :meth:`GreedyBatcher.swap` changes the model meanwhile.
    """

    __slots__ = ("texts", "future", "loop", "results", "unscored", "predict")

    def __init__(
        self,
        texts: list[str],
        future: Any,
        loop: asyncio.AbstractEventLoop | None,
        predict: Callable[[list[str]], Sequence[Any]],
    ) -> None:
        self.texts = texts
        self.predict = predict
        self.future = future
        self.loop = loop
        self.results: list[Any] = [None] * len(texts)
        self.unscored = len(texts)

    def settle(self, outcome: list[Any] | Exception) -> None:
        """Hand the results (or the failure) to the caller, unless it has gone away or failed already."""
        if self.future.done():  # cancelled by its caller, or an earlier piece failed
            return
        if self.loop is None:
            _settle(self.future, outcome)
            return
        with contextlib.suppress(RuntimeError):  # the caller's event loop has closed: nobody is waiting
            self.loop.call_soon_threadsafe(_settle, self.future, outcome)


def _settle(future: Any, outcome: list[Any] | Exception) -> None:
    if future.done():  # cancelled by its caller, or an earlier piece failed
        return
    try:
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:  # cancelled meanwhile, from another thread
        pass


@dataclass
class _Piece:
    """Posts ``start:end`` of a request: a request bigger than a runner's share is scored in pieces."""

    request: _Request
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


@dataclass
class BatchStats:
    """Counts of the calls made so far: calls, requests (or pieces of one) and posts."""

    calls: int = 0
    requests: int = 0
    posts: int = 0


class GreedyBatcher:
    """Merges concurrent requests into calls of ``predict`` (list of texts -> list of results).

    ``predict`` runs on ``runners`` dedicated engine threads, so it must be safe to call from
    several threads at once when ``runners`` > 1. An idle runner takes its share of the queued
    posts: all of them divided by the runners now idle, at most ``max_posts``. It takes them the
    moment its call ends, without waiting for the event loop, which at that moment is busy sending
    the replies of the call just made; results reach the loop with ``call_soon_threadsafe``.

    A request bigger than the share is split between runners when both parts hold at least
    ``min_piece`` posts (smaller calls cost more per post than the waiting they save), and at
    ``max_posts`` whatever its size. Further requests join a call only while it holds at most
    ``merge_posts`` posts (default: ``max_posts``). ``on_batch(requests, posts)`` is called on the engine thread
    after each call, for metrics.
    """

    def __init__(
        self,
        predict: Callable[[list[str]], Sequence[Any]],
        max_posts: int = 256,
        on_batch: Callable[[int, int], None] | None = None,
        runners: int = 1,
        min_piece: int = 16,
        merge_posts: int | None = None,
    ) -> None:
        if max_posts < 1 or runners < 1 or min_piece < 1 or (merge_posts is not None and merge_posts < 1):
            raise ValueError("max_posts, runners, min_piece and merge_posts must be at least 1")
        self.predict = predict
        self.max_posts = max_posts
        self.merge_posts = max_posts if merge_posts is None else merge_posts
        self.on_batch = on_batch
        self.runners = runners
        self.min_piece = min_piece
        self.stats = BatchStats()
        self._queue: collections.deque[_Piece] = collections.deque()
        self._queued_posts = 0
        self._idle = runners
        self._ready = threading.Condition()
        self._closed = False
        self._started = False
        self._threads: list[threading.Thread] = []

    async def submit(self, texts: list[str]) -> list[Any]:
        """The results for ``texts``, in order, scored with whatever else is queued (from an event loop)."""
        return (await self.submit_traced(texts))[1]

    async def submit_traced(self, texts: list[str]) -> tuple[Callable[[list[str]], Sequence[Any]], list[Any]]:
        """Like :meth:`submit`, with the ``predict`` that scored every one of ``texts`` (see :meth:`swap`)."""
        loop = asyncio.get_running_loop()
        request = _Request(list(texts), loop.create_future(), loop, self.predict)
        if not texts:
            return request.predict, []
        self._enqueue(request)
        return request.predict, await request.future

    def swap(self, predict: Callable[[list[str]], Sequence[Any]]) -> Callable[[list[str]], Sequence[Any]]:
        """Score requests queued from now on with ``predict``; return the one it replaces.

        Requests already queued or running finish with the model they were queued for: a call never
        mixes requests of two models, so the swap happens between calls, without a pause.
        """
        with self._ready:
            old, self.predict = self.predict, predict
        return old

    def run(self, texts: list[str]) -> list[Any]:
        """The results for ``texts``, like :meth:`submit` but blocking: for threads other than the runners."""
        if not texts:
            return []
        request = _Request(list(texts), Future(), None, self.predict)
        self._enqueue(request)
        return request.future.result()  # type: ignore[no-any-return]

    def _enqueue(self, request: _Request) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            request.predict = self.predict  # under the lock: a swap now cannot be half seen
            if not self._started:
                self._started = True
                for number in range(self.runners):
                    thread = threading.Thread(target=self._serve, name=f"givetake-engine-{number}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
            self._queue.append(_Piece(request, 0, len(request.texts)))
            self._queued_posts += len(request.texts)
            self._ready.notify()

    def _portion(self, size: int, room: int, first: bool) -> int:
        """How many posts of a queued piece of ``size`` posts go in a call with ``room`` left."""
        if size <= room:
            return size
        if room >= self.min_piece and size - room >= self.min_piece:
            return room
        return min(size, self.max_posts) if first else 0

    def _take(self) -> list[_Piece]:
        """The next call's pieces: this runner's share of the queue, in order (at least one piece).

        Called with ``_ready`` held, by an idle runner.
        """
        share = min(self.max_posts, -(-self._queued_posts // self._idle))
        batch: list[_Piece] = []
        posts = 0
        while self._queue and posts < share:
            piece = self._queue[0]
            if piece.request.future.done():  # the caller went away (disconnect, timeout) or it failed
                self._queue.popleft()
                self._queued_posts -= len(piece)
                continue
            if batch and piece.request.predict is not batch[0].request.predict:
                break  # queued for another model (a swap happened): it starts the next call
            if batch and posts + len(piece) > self.merge_posts:
                break  # merging more would make a long call that every request in it waits for
            take = self._portion(len(piece), share - posts, first=not batch)
            if take == 0:
                break
            if take == len(piece):
                self._queue.popleft()
            else:
                piece, self._queue[0] = (
                    _Piece(piece.request, piece.start, piece.start + take),
                    _Piece(piece.request, piece.start + take, piece.end),
                )
            batch.append(piece)
            posts += take
            self._queued_posts -= take
        return batch

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not (batch := self._take()):
                    if self._closed:
                        return
                    self._ready.wait()
                self._idle -= 1
                if self._queue and self._idle:
                    self._ready.notify()  # the rest is another idle runner's share
            texts = [t for piece in batch for t in piece.request.texts[piece.start : piece.end]]
            try:
                results: Sequence[Any] | Exception = batch[0].request.predict(texts)
            except Exception as exc:  # every waiting request gets the failure, none hangs
                results = exc
            done: list[_Request] = []
            with self._ready:
                self._idle += 1
                offset = 0
                for piece in batch:
                    request = piece.request
                    if isinstance(results, Exception):
                        request.settle(results)
                        continue
                    request.results[piece.start : piece.end] = results[offset : offset + len(piece)]
                    offset += len(piece)
                    request.unscored -= len(piece)
                    if request.unscored == 0:
                        done.append(request)
                self.stats.calls += 1
                self.stats.requests += len(batch)
                self.stats.posts += len(texts)
                if self._queue:
                    self._ready.notify()
            for request in done:
                request.settle(request.results)
            if self.on_batch is not None:
                try:
                    self.on_batch(len(batch), len(texts))
                except Exception:  # a metrics failure must not stop an engine thread
                    logger.exception("on_batch failed")

    def close(self) -> None:
        """Let the runners finish what is queued, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class EngineThreads:
    """A predictor's engine threads behind one queue: the scorer of the server and of ``givetake score``.

    Make the predictor with ``calls`` set to the threads wanted (``Predictor(..., calls=cores)``):
    each of its ``calls`` engine threads then runs one single-threaded call at a time, and a big
    call of :meth:`predict` is split between the idle ones. Measured offline on real posts (2
    cores, int8, calls of 512 posts): 882 posts/s against 767 for one call on both cores.
    """

    def __init__(
        self,
        predictor: Predictor,
        max_posts: int = 256,
        on_batch: Callable[[int, int], None] | None = None,
        merge_posts: int | None = None,
    ) -> None:
        self.predictor = predictor
        self.batcher = GreedyBatcher(
            predictor.predict, max_posts=max_posts, on_batch=on_batch, runners=predictor.calls, merge_posts=merge_posts
        )

    @property
    def labels(self) -> list[str]:
        """Label names in model output order."""
        return self.predictor.labels

    @property
    def model_dir(self) -> Path:
        """The loaded model's directory."""
        return self.predictor.model_dir

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """Predictions for ``texts``, queued with everything else (blocking; not from an event loop)."""
        return self.batcher.run(texts)

    async def submit(self, texts: list[str]) -> list[dict[str, Any]]:
        """Predictions for ``texts``, queued with everything else (from an event loop)."""
        return await self.batcher.submit(texts)

    async def submit_traced(self, texts: list[str]) -> tuple[Predictor, list[dict[str, Any]]]:
        """Like :meth:`submit`, with the predictor that made every one of the predictions."""
        predict, results = await self.batcher.submit_traced(texts)
        return predict.__self__, results  # type: ignore[attr-defined]

    def swap(self, predictor: Predictor) -> Predictor:
        """Serve ``predictor`` from the next call on; requests queued before finish on the old one.

        ``predictor`` must have as many ``calls`` as the one it replaces (one per engine thread).
        Returns the predictor replaced.
        """
        if predictor.calls != self.predictor.calls:
            raise ValueError(f"the new predictor makes {predictor.calls} calls, the threads {self.predictor.calls}")
        old = self.predictor
        self.batcher.swap(predictor.predict)
        self.predictor = predictor
        return old

    def close(self) -> None:
        """Stop the engine threads once the queue is empty."""
        self.batcher.close()
