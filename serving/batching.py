"""Greedy request batching for ``POST /classify``: run whatever is waiting as soon as the engine is free.

Concurrent requests queue here; one runner takes every queued request (up to ``max_posts`` posts,
first come first served), scores them in one call on a dedicated thread and hands each request
its own slice of the results. While that call runs, new requests queue and form the next batch.
Nothing ever waits for a batch to fill: on a CPU, where one call keeps every core busy, a request
that arrives while the engine is idle is best started at once, and one that arrives while it is
busy has to wait for that call anyway.

Why not BentoML's adaptive batching (``@bentoml.api(batchable=True)``), measured with
``bench/http.py`` (2 cores, int8 MiniLM, one post per request, 32 clients): its dispatcher holds
requests back to grow batches, by an amount learnt from the average wait of past batches; under a
steady load that wait feeds on itself and the server's CPU use stayed at 1.35 of 2 cores while 32
requests were queued (230-257 posts/s, 51-61% of the raw engine). After a burst it kept waiting
about 60 ms per request for seconds (single-post p50 62 ms instead of 7 ms).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future[list[Any]]
    loop: asyncio.AbstractEventLoop

    def resolve(self, outcome: list[Any] | Exception) -> None:
        """Hand the results (or the failure) to the waiting caller, on its event loop."""
        self.loop.call_soon_threadsafe(_settle, self.future, outcome)


def _settle(future: asyncio.Future[list[Any]], outcome: list[Any] | Exception) -> None:
    if future.done():  # cancelled meanwhile
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


@dataclass
class BatchStats:
    """Counts of the calls made so far: calls, requests and posts."""

    calls: int = 0
    requests: int = 0
    posts: int = 0


class GreedyBatcher:
    """Merges concurrent ``submit`` calls into calls of ``predict`` (list of texts -> list of results).

    ``predict`` runs on one dedicated engine thread, one call at a time. That thread takes the next
    batch itself the moment a call ends, without waiting for the event loop, which at that moment
    is busy sending the replies of the call just made; results go back to the loop with
    ``call_soon_threadsafe``. (Two engine threads with one ONNX Runtime thread each were measured
    too: 284-306 posts/s at 32 clients against 331 for one engine thread with two.)

    ``max_posts`` bounds the posts in one call (a single larger request still runs, alone).
    ``on_batch(requests, posts)`` is called on the engine thread after each call, for metrics.
    """

    def __init__(
        self,
        predict: Callable[[list[str]], Sequence[Any]],
        max_posts: int = 256,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_posts < 1:
            raise ValueError("max_posts must be at least 1")
        self.predict = predict
        self.max_posts = max_posts
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._queue: collections.deque[_Request] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self._started = False

    async def submit(self, texts: list[str]) -> list[Any]:
        """The results for ``texts``, in order, scored with whatever else is queued."""
        loop = asyncio.get_running_loop()
        request = _Request(list(texts), loop.create_future(), loop)
        with self._ready:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if not self._started:
                self._started = True
                threading.Thread(target=self._serve, name="givetake-engine", daemon=True).start()
            self._queue.append(request)
            self._ready.notify()
        return await request.future

    def _take(self) -> list[_Request]:
        """The next batch: queued requests in order while they fit in ``max_posts`` (at least one).

        Called with ``_ready`` held.
        """
        batch: list[_Request] = []
        posts = 0
        while self._queue:
            request = self._queue[0]
            if request.future.done():  # the caller went away (disconnect, timeout)
                self._queue.popleft()
                continue
            if batch and posts + len(request.texts) > self.max_posts:
                break
            batch.append(self._queue.popleft())
            posts += len(request.texts)
        return batch

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not (batch := self._take()):
                    if self._closed:
                        return
                    self._ready.wait()
            texts = [t for r in batch for t in r.texts]
            try:
                results = self.predict(texts)
            except Exception as exc:  # every waiting request gets the failure, none hangs
                for request in batch:
                    request.resolve(exc)
                continue
            start = 0
            for request in batch:
                request.resolve(list(results[start : start + len(request.texts)]))
                start += len(request.texts)
            self.stats.calls += 1
            self.stats.requests += len(batch)
            self.stats.posts += len(texts)
            if self.on_batch is not None:
                self.on_batch(len(batch), len(texts))

    def close(self) -> None:
        """Let the engine thread finish what is queued, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
