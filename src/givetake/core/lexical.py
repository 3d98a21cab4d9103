"""TF-IDF word + character n-grams with one logistic regression per label.

Two roles, one class: alone it is the baseline every model is compared with
(``givetake baseline``); blended with the fine-tuned transformer it is the model's lexical
half. The blend was measured on real posts: the transformer and this model err on different
posts, and averaging their probabilities raised macro average precision on the gold dev set
(see README, "Quality").

Saved without pickle: vocabularies and settings as JSON (``lexical.json``), IDF vectors and
weights as safetensors (``lexical.safetensors``).

scikit-learn and scipy.sparse (together about 1.5 s to import) are imported inside the functions
that build or apply the model: ``import givetake.core`` and the CLI start without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from givetake.core.text import normalize

JSON_FILE = "lexical.json"
WEIGHTS_FILE = "lexical.safetensors"
_VECTORIZERS = {
    "word": {"analyzer": "word", "ngram_range": (1, 2)},
    "char": {"analyzer": "char_wb", "ngram_range": (2, 5)},
}


def _vectorizer(kind: str, vocabulary: list[str] | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        min_df=2, sublinear_tf=True, lowercase=True, dtype=np.float32, vocabulary=vocabulary, **_VECTORIZERS[kind]
    )  # type: ignore[arg-type]


class LexicalModel:
    """TF-IDF features and per-label logistic regressions, with class-balanced weights."""

    # C (inverse regularisation) 8 rather than 4: blended with three transformers (two seeds, fp32
    # and bf16) it raised gold dev macro-F1 each time; bench/RESULTS.md, "The lexical half's C".
    def __init__(self, label_names: list[str], c: float = 8.0, seed: int = 42) -> None:
        self.label_names = list(label_names)
        self.c = c
        self.seed = seed
        self.vectorizers: dict[str, Any] = {}
        self.weight = np.zeros((len(label_names), 0), dtype=np.float32)
        self.bias = np.zeros(len(label_names), dtype=np.float32)

    def _features(self, texts: list[str]) -> Any:
        from scipy.sparse import hstack

        norm = [normalize(t) for t in texts]
        return hstack([self.vectorizers[k].transform(norm) for k in _VECTORIZERS]).tocsr()

    def fit(self, texts: list[str], y: np.ndarray, known: np.ndarray | None = None) -> LexicalModel:
        """Fit the vectorizers and one balanced logistic regression per label.

        ``known`` (0/1, shape like ``y``) restricts each label's regression to the rows where
        that label was judged; the vectorizers learn from every text.
        """
        from scipy.sparse import hstack
        from sklearn.linear_model import LogisticRegression

        norm = [normalize(t) for t in texts]
        self.vectorizers = {k: _vectorizer(k) for k in _VECTORIZERS}
        x = hstack([self.vectorizers[k].fit_transform(norm) for k in _VECTORIZERS]).tocsr()
        weights, biases = [], []
        for j in range(y.shape[1]):
            rows = np.flatnonzero(known[:, j]) if known is not None else np.arange(len(y))
            yj = y[rows, j]
            if len(yj) == 0 or yj.min() == yj.max():  # a label never (or always) seen: constant score
                weights.append(np.zeros(x.shape[1], dtype=np.float32))
                biases.append(10.0 if len(yj) and yj[0] == 1 else -10.0)
                continue
            clf = LogisticRegression(C=self.c, class_weight="balanced", max_iter=2000, random_state=self.seed)
            clf.fit(x if known is None else x[rows], yj)
            weights.append(clf.coef_[0].astype(np.float32))
            biases.append(float(clf.intercept_[0]))
        self.weight = np.vstack(weights)
        self.bias = np.asarray(biases, dtype=np.float32)
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Independent per-label probabilities, shape (len(texts), labels)."""
        if not texts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        logits = self._features(texts) @ self.weight.T + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50))), dtype=np.float32)

    def save(self, directory: str | Path, blend_weight: float | None = None) -> None:
        """Write ``lexical.json`` and ``lexical.safetensors`` into ``directory``."""
        directory = Path(directory)
        meta = {
            "labels": self.label_names,
            "blend_weight": blend_weight,
            "c": self.c,  # a record of how it was fitted; prediction does not use it
            "vocabularies": {
                k: [t for t, _ in sorted(v.vocabulary_.items(), key=lambda kv: kv[1])]
                for k, v in self.vectorizers.items()
            },
        }
        (directory / JSON_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        tensors = {f"idf_{k}": v.idf_.astype(np.float32) for k, v in self.vectorizers.items()}
        tensors.update(weight=self.weight, bias=self.bias)
        save_file(tensors, str(directory / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: str | Path) -> tuple[LexicalModel, float | None]:
        """The model saved in ``directory`` and its blend weight (None when saved alone)."""
        directory = Path(directory)
        meta = json.loads((directory / JSON_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(directory / WEIGHTS_FILE))
        model = cls(meta["labels"])
        mismatch = f"{directory / WEIGHTS_FILE}: weights do not match the saved vocabularies"
        for kind, terms in meta["vocabularies"].items():
            vec = _vectorizer(kind, vocabulary=terms)
            try:
                vec.idf_ = tensors[f"idf_{kind}"]
            except ValueError as exc:
                raise ValueError(f"{mismatch} ({exc})") from None
            model.vectorizers[kind] = vec
        model.weight, model.bias = tensors["weight"], tensors["bias"]
        expected = sum(len(t) for t in meta["vocabularies"].values())
        if model.weight.shape != (len(model.label_names), expected):
            raise ValueError(mismatch)
        return model, meta.get("blend_weight")


def has_lexical(directory: str | Path) -> bool:
    """Whether a model directory holds a lexical half."""
    return (Path(directory) / JSON_FILE).is_file() and (Path(directory) / WEIGHTS_FILE).is_file()
