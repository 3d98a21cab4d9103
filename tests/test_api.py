"""The Python API: ``givetake.load``, ``Classifier.predict`` and ``Classifier.predict_frame``.

``predict_frame`` must give the columns and values that ``givetake score`` gives on the same rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import givetake
from givetake.cli import app
from givetake.core.classifier import Classifier
from givetake.core.predictor import Predictor
from givetake.errors import DataError, GivetakeError, ModelNotFound
from givetake.serving.score import score_file
from tests.helpers import make_rows, read_errors, read_output, write_input

# fp32 ONNX everywhere here: int8 scores move slightly with batch-mates, and these tests compare
# paths that batch differently.
ENGINE = "onnx"


@pytest.fixture(scope="module")
def clf(trained_run: Path) -> Classifier:
    return givetake.load(trained_run, engine=ENGINE)


def test_load_by_path_and_by_store_tag(clf: Classifier, trained_run: Path) -> None:
    assert clf.engine == ENGINE
    assert clf.labels == Predictor(trained_run).labels
    by_tag = givetake.load("givetake:tiny", engine=ENGINE)
    assert by_tag.labels == clf.labels and by_tag.thresholds == clf.thresholds


def test_predict_a_list_and_a_single_string(clf: Classifier, trained_run: Path) -> None:
    texts = ["Our new course opens Monday, sign up now!", "Any tips for a first marathon?"]
    got = clf.predict(texts)
    assert got == Predictor(trained_run, engine=ENGINE).predict(texts)
    for pred in got:
        assert set(pred) == {"labels", "scores", "truncated"}
        assert set(pred["scores"]) == set(clf.labels)
        assert pred["labels"] == [n for n in clf.labels if pred["scores"][n] >= clf.thresholds[n]]
    assert clf.predict(texts[1]) == [got[1]]  # a string is a list of one


@pytest.mark.parametrize(
    ("texts", "says"),
    [
        ([""], "'texts[0]' is empty or only whitespace"),
        (["fine", "   \n"], "'texts[1]' is empty or only whitespace"),
        (["fine", None], "'texts[1]' is empty (null)"),
        ("", "'texts[0]' is empty or only whitespace"),
    ],
)
def test_empty_texts_are_one_line_errors(clf: Classifier, texts: Any, says: str) -> None:
    with pytest.raises(DataError) as err:
        clf.predict(texts)
    assert isinstance(err.value, GivetakeError)
    assert str(err.value) == says and "\n" not in str(err.value)


def test_missing_model_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as err:
        givetake.load(tmp_path / "nope")
    assert isinstance(err.value, GivetakeError)
    assert str(tmp_path / "nope") in str(err.value) and "\n" not in str(err.value)


def _rows() -> list[dict[str, Any]]:
    """Posts with unusable texts among them, and input columns that clash with the added ones."""
    rows = make_rows(40, bad={3: "   ", 7: None, 11: "\n\t"})
    for i, row in enumerate(rows):
        row["labels"] = f"my own {i}"  # clashes with the added `labels`
        row["error"] = ""  # clashes with the added `error`
    return rows


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), abs_tol=1e-5)
    return bool(a == b)


def test_predict_frame_gives_what_score_gives(clf: Classifier, trained_run: Path, tmp_path: Path) -> None:
    rows = _rows()
    frame = clf.predict_frame(pd.DataFrame(rows), text_column="text")
    scores = [f"score_{n}" for n in clf.labels]
    expected_columns = ["id", "text", "author", "input_labels", "input_error", "labels", *scores, "error"]
    assert list(frame.columns) == expected_columns
    assert len(frame) == len(rows) and frame["id"].tolist() == [r["id"] for r in rows]
    assert frame["input_labels"].tolist() == [r["labels"] for r in rows]  # the input's values, kept

    # The archive task's output (one file, errors inline): same columns, same values.
    src = write_input(tmp_path / "posts.jsonl", rows)
    out = tmp_path / "inline.jsonl"
    score_file(src, out, Predictor(trained_run, engine=ENGINE), inline_errors=True, progress=False)
    scored = read_output(out)
    assert list(scored[0]) == expected_columns
    for got, want in zip(frame.to_dict("records"), scored, strict=True):
        for column in expected_columns:
            value = got[column]
            if column in ("id", "text", "author", "input_labels", "input_error") or column in scores:
                # pandas holds a missing input or score as NaN/NA; the file holds null.
                value = None if value is not None and pd.isna(value) else value
            assert _same(value, want[column]), (column, value, want[column])

    # `givetake score` on the command line: the rows with text, and the others in the errors file.
    cli_out = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(
        app, ["score", str(src), "-o", str(cli_out), "--model", str(trained_run), "--engine", ENGINE]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    good = frame[frame["error"].isna()]
    cli_rows = read_output(cli_out)
    assert [r["id"] for r in cli_rows] == good["id"].tolist()
    for got, want in zip(good.to_dict("records"), cli_rows, strict=True):
        assert got["labels"] == want["labels"]
        assert all(_same(float(got[c]), want[c]) for c in scores)
    bad = frame[frame["error"].notna()]
    errors = read_errors(cli_out)
    assert [e["row"] for e in errors] == [i + 1 for i in bad.index]
    assert [e["reason"] for e in errors] == bad["error"].tolist()


def test_predict_frame_refuses_a_missing_text_column(clf: Classifier) -> None:
    with pytest.raises(DataError, match="no column 'body'; columns are: id, text"):
        clf.predict_frame(pd.DataFrame({"id": [1], "text": ["hello"]}), text_column="body")


def test_predict_frame_keeps_an_empty_frame_empty(clf: Classifier) -> None:
    empty = clf.predict_frame(pd.DataFrame({"text": pd.Series([], dtype=object)}))
    assert len(empty) == 0 and list(empty.columns) == ["text", "labels", *[f"score_{n}" for n in clf.labels], "error"]


def test_the_example_script_runs(trained_run: Path) -> None:
    """examples/python_api.py against the tiny model (its default is givetake:latest)."""
    example = Path(__file__).resolve().parent.parent / "examples" / "python_api.py"
    namespace: dict[str, Any] = {"__name__": "example"}
    exec(compile(example.read_text(encoding="utf-8"), str(example), "exec"), namespace)
    report = namespace["main"]([str(trained_run)])
    assert json.loads(json.dumps(report))["labels"] == givetake.load(trained_run).labels
