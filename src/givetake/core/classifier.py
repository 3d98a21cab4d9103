"""The public Python API's model object: ``givetake.load(...)`` returns a :class:`Classifier`.

It wraps the same :class:`~givetake.core.predictor.Predictor` that the server and ``givetake score``
use, and :meth:`Classifier.predict_frame` adds the columns ``givetake score`` adds, under the same
names and rules, so a notebook, a Spark ``mapInPandas`` function and an archive job agree.

pandas is imported inside the methods that take or return frames: it is optional (the ``dev``
extra), and :meth:`Classifier.predict` works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from givetake.core.bundle import ModelBundle
from givetake.core.predictor import Predictor
from givetake.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


def text_problem(rec: dict[str, Any], column: str) -> str | None:
    """Why ``rec`` has no usable text in ``column`` (None when it has)."""
    if column not in rec:
        return f"no {column!r} field"
    value = rec[column]
    if value is None:
        return f"{column!r} is empty (null)"
    if not isinstance(value, str):
        return f"{column!r} is not text but {type(value).__name__} {value!r:.40}"
    if not value.strip():
        return f"{column!r} is empty or only whitespace"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON may escape a lone surrogate ("\ud800"); tokenizers reject it
        return f"{column!r} is not valid Unicode (a lone surrogate at character {exc.start})"
    return None


class OutputColumns:
    """Names of the columns scoring adds, and renaming of input columns that would clash with them."""

    def __init__(self, labels: list[str], inline_errors: bool) -> None:
        self.labels = labels
        self.scores = [f"score_{n}" for n in labels]
        self.added = ["labels", *self.scores] + (["error"] if inline_errors else [])
        self._added = set(self.added)

    def rename(self, name: str) -> str:
        """An input column's name in the output: the value is kept, under another name, rather
        than overwritten by a prediction."""
        while name in self._added:
            name = f"input_{name}"
        return name

    def input_part(self, rec: dict[str, Any]) -> dict[str, Any]:
        return {self.rename(k): v for k, v in rec.items()}


class Classifier:
    """A loaded givetake model: :meth:`predict` for texts, :meth:`predict_frame` for tables."""

    def __init__(self, model: str | Path | ModelBundle, engine: str | None = None, batch_size: int = 32) -> None:
        self.predictor = Predictor(model, batch_size=batch_size, engine=engine)

    @property
    def labels(self) -> list[str]:
        """The label names, in the model's order."""
        return self.predictor.labels

    @property
    def thresholds(self) -> dict[str, float]:
        """The per-label decision thresholds the model was saved with."""
        return dict(self.predictor.thresholds)

    @property
    def engine(self) -> str:
        """The engine running: ``torch``, ``onnx`` or ``onnx-int8``."""
        return self.predictor.engine

    def predict(self, texts: str | list[str]) -> list[dict[str, Any]]:
        """Per text: ``labels`` (at or above threshold), ``scores`` per label, ``truncated``.

        A single string is taken as a list of one. Empty texts are refused with a :class:`DataError`.
        """
        batch = [texts] if isinstance(texts, str) else list(texts)
        for i, text in enumerate(batch):
            problem = text_problem({f"texts[{i}]": text}, f"texts[{i}]")
            if problem:
                raise DataError(problem)
        return self.predictor.predict(batch)

    def predict_frame(self, df: pd.DataFrame, text_column: str = "text") -> pd.DataFrame:
        """A copy of ``df`` with the columns ``givetake score`` adds: ``labels`` (a list), one
        ``score_<label>`` per label, and ``error`` (why a row has no prediction, else None).

        Every row is kept, in order; a row without usable text gets empty labels, no scores and its
        reason in ``error``. An input column whose name clashes with an added one is kept as
        ``input_<name>``.
        """
        import pandas as pd

        if text_column not in df.columns:
            raise DataError(f"no column {text_column!r}; columns are: {', '.join(map(str, df.columns))}")
        cols = OutputColumns(self.labels, inline_errors=True)
        texts = df[text_column].tolist()
        problems = [text_problem({text_column: None if _missing(t) else t}, text_column) for t in texts]
        good = [i for i, p in enumerate(problems) if p is None]
        preds = self.predictor.predict([texts[i] for i in good]) if good else []
        by_row = dict(zip(good, preds))
        out = df.rename(columns={c: cols.rename(str(c)) for c in df.columns})
        out = out.copy()
        out["labels"] = [list(by_row[i]["labels"]) if i in by_row else [] for i in range(len(df))]
        for name, score in zip(cols.labels, cols.scores):
            out[score] = pd.array(
                [by_row[i]["scores"][name] if i in by_row else None for i in range(len(df))], dtype="Float64"
            )
        # object dtype: None stays None (pandas' default string dtype would turn it into NaN).
        out["error"] = pd.Series(problems, index=out.index, dtype=object)
        return out


def _missing(value: Any) -> bool:
    """pandas' missing markers (None, NaN, NA) count as no text."""
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, (list, dict)) else False
    except (TypeError, ValueError):
        return False
