"""The givetake Python API in one script: load a model, label a few posts, label a table.

    python examples/python_api.py                    # the store's givetake:latest
    python examples/python_api.py models/<run>       # a run directory, or any store tag

The texts below are written for this example. See docs/python-api.md for the reference.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import pandas as pd

import givetake

POSTS = [
    "Our spring workshop opens for booking on Monday - early-bird seats are half price until Friday.",
    "Has anyone moved a small team from spreadsheets to a proper CRM? What would you do differently?",
    "Sorry to hear the parcel is late, Sam. Send us a DM with the order number and we'll chase it today.",
    "Wrote up the five checks I run before every release; link in the replies if it saves you an evening.",
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the example; returns what it printed, as a dict (the test suite runs it on a tiny model)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="givetake:latest", help="store tag or run directory")
    args = parser.parse_args(argv)

    try:
        clf = givetake.load(args.model)
    except givetake.GivetakeError as exc:  # one line: what is wrong and what to do
        sys.exit(f"error: {exc}")
    print(f"model {args.model}: engine {clf.engine}, labels {', '.join(clf.labels)}")

    # Texts in, one dict per text out: labels at or above their thresholds, a score per label.
    predictions = clf.predict(POSTS)
    for text, pred in zip(POSTS, predictions):
        print(f"{', '.join(pred['labels']) or '(none)':<40} {text[:60]}")

    # A table in, the same table out with the columns `givetake score` adds.
    frame = pd.DataFrame({"id": [1, 2, 3], "text": [POSTS[0], "   ", POSTS[2]]})
    scored = clf.predict_frame(frame, text_column="text")
    print(scored[["id", "labels", "error"]].to_string(index=False))

    # Bad input is a GivetakeError with a one-line message.
    try:
        clf.predict([""])
    except givetake.GivetakeError as exc:
        print(f"refused: {exc}")

    return {
        "labels": clf.labels,
        "engine": clf.engine,
        "predictions": predictions,
        "frame_errors": scored["error"].tolist(),
    }


if __name__ == "__main__":
    main()
