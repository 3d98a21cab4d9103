"""The naive peer of ``bench/peers.py``: a Starlette server around ``transformers.pipeline``.

What one writes first to serve a fine-tuned classifier: the Hugging Face pipeline with every
label's sigmoid score (``top_k=None, function_to_apply="sigmoid"``), called per request on
Starlette's thread pool, torch on every core. It reads the same run directory as givetake, with
the same 128-token limit, and answers ``POST /classify {"texts": [...]}`` with one
``{label: score}`` per text.

    python bench/pipeline_server.py RUN_DIR PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on the import path, where bench/http.py would shadow the
# standard library's http package (which uvicorn imports): drop it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from transformers import pipeline  # noqa: E402

MAX_LENGTH = 128


def make_app(run_dir: str) -> Starlette:
    """The app serving the model in ``run_dir``."""
    classify_pipe = pipeline("text-classification", model=run_dir, top_k=None, function_to_apply="sigmoid")

    async def classify(request: Request) -> JSONResponse:
        texts = (await request.json())["texts"]
        out = await run_in_threadpool(classify_pipe, texts, truncation=True, max_length=MAX_LENGTH)
        return JSONResponse([{d["label"]: d["score"] for d in scores} for scores in out])

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/classify", classify, methods=["POST"]), Route("/readyz", ready)])


if __name__ == "__main__":
    uvicorn.run(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
