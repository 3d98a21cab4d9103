"""New, renamed and removed labels: schema versions, unknown cells masked out of training and evaluation."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from givetake.cli import app
from givetake.core.lexical import LexicalModel
from givetake.core.thresholds import tune_thresholds
from givetake.labels.schema import SCHEMA_PATH, SchemaError, load_schema, parse_schema
from givetake.training.data import DataError, label_warnings, load_file, load_posts
from givetake.training.evaluate import compute_metrics
from givetake.training.train import _trainer_class, pos_weights

RAW = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
NEW_LABEL = {
    "name": "shoutout",
    "side": "give",
    "since": 2,
    "summary": "publicly thanks or congratulates someone else",
    "definition": "The author thanks, congratulates or credits another person or team in public.",
    "rules": ["The person praised is not the author."],
    "yes_examples": ["Huge thanks to the volunteers", "Congrats to Ana on the promotion", "Props to the bin crews"],
    "no_examples": ["Thanks a lot, rain", "@user Thanks for getting in touch", "Thank you for shopping with us"],
    "sources": ["000"],
}


def _schema_file(tmp_path: Path, mutate=None) -> Path:  # type: ignore[no-untyped-def]
    raw = copy.deepcopy(RAW)
    raw["version"] = 2
    raw["labels"].append(dict(NEW_LABEL))
    if mutate:
        mutate(raw)
    path = tmp_path / "schema_v2.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _renamed(raw: dict) -> None:
    raw["labels"][2]["name"] = "resource_share"
    raw["renamed"] = [{"from": "helpful_share", "to": "resource_share", "version": 2}]


# --- schema ------------------------------------------------------------------------------


def test_since_defaults_to_one_and_is_validated(tmp_path: Path) -> None:
    schema = load_schema(_schema_file(tmp_path))
    assert [s.since for s in schema.labels] == [1, 1, 1, 1, 1, 2]
    assert "since" not in yaml.safe_dump(load_schema().to_dict())  # version-1 schemas keep their shape
    schema.save(tmp_path / "copy.yaml")
    assert load_schema(tmp_path / "copy.yaml") == schema
    raw = copy.deepcopy(RAW)
    raw["labels"][0]["since"] = 3
    with pytest.raises(SchemaError, match="label 'pitch': field 'since' must be a schema version from 1 to 1"):
        parse_schema(raw)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"renamed": [{"from": "pitch", "to": "ask", "version": 2}]}, "'pitch' is still a label of the schema"),
        ({"renamed": [{"from": "promo", "to": "nothing", "version": 2}]}, "'promo' -> 'nothing', which is not a label"),
        ({"removed": [{"name": "spam", "version": 5}]}, "field 'version' must be the schema version of the change"),
        (
            {"removed": [{"name": "spam", "version": 2}, {"name": "spam", "version": 2}]},
            "renamed or removed more than once",
        ),
    ],
)
def test_bad_label_changes_name_the_problem(changes: dict, message: str) -> None:
    raw = {**copy.deepcopy(RAW), "version": 2, **changes}
    with pytest.raises(SchemaError, match=message):
        parse_schema(raw)


# --- data: versions and unknown cells -------------------------------------------------------


def test_rows_of_an_older_version_are_unknown_for_a_new_label(tmp_path: Path) -> None:
    schema = load_schema(_schema_file(tmp_path))
    old = _jsonl(tmp_path / "old.jsonl", [{"text": "buy socks", "labels": ["pitch"]}, {"text": "hi", "labels": []}])
    new = _jsonl(
        tmp_path / "new.jsonl",
        [
            {"text": "thanks Ana!", "labels": ["shoutout"], "schema_version": 2},
            {"text": "sale on", "labels": ["pitch"], "schema_version": 2},
        ],
    )
    whole = _jsonl(tmp_path / "whole.jsonl", [{"text": "nice day", "labels": []}])
    mixed = _jsonl(tmp_path / "mixed.jsonl", [{"text": "well done team", "labels": ["shoutout"]}])
    posts = load_posts([old, new, f"{whole}@v2", mixed], schema)
    j = schema.names.index("shoutout")
    # version 1 (no record): unknown; version 2 (field or @v2): a known negative; a mention: a known positive
    assert posts.mask[:, j].tolist() == [0, 0, 1, 1, 1, 1]
    assert posts.y[:, j].tolist() == [0, 0, 1, 0, 0, 1]
    assert posts.mask[:, :j].all()  # the old labels were judged everywhere
    assert posts.counts()["unknown"]["shoutout"] == 2
    assert posts.subset([0, 2]).mask[:, j].tolist() == [0, 1]


def test_version_newer_than_the_schema_is_refused(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "v3.jsonl", [{"text": "x", "labels": [], "schema_version": 3}])
    with pytest.raises(
        DataError, match=r"v3\.jsonl, line 1: labelled with schema version 3, but the schema .* is version 2"
    ):
        load_file(p, load_schema(_schema_file(tmp_path)))
    q = _jsonl(tmp_path / "bad.jsonl", [{"text": "x", "labels": [], "schema_version": "two"}])
    with pytest.raises(DataError, match="'schema_version' must be a whole number, got 'two'"):
        load_file(q, load_schema(_schema_file(tmp_path)))


def test_renamed_label_error_names_file_row_and_both_names(tmp_path: Path) -> None:
    schema = load_schema(_schema_file(tmp_path, _renamed))
    p = _jsonl(
        tmp_path / "new.jsonl",
        [
            {"text": "fine", "labels": ["resource_share"], "schema_version": 2},
            {"text": "tip: clear the cache", "labels": ["helpful_share"], "schema_version": 2},
        ],
    )
    with pytest.raises(DataError) as err:
        load_file(p, schema)
    assert str(err.value) == (
        f"{p}, line 2: label 'helpful_share' was renamed to 'resource_share' in schema version 2, "
        "and this row is labelled with version 2; write the new name"
    )


def test_old_name_in_data_labelled_before_the_rename_is_read_as_the_new_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    schema = load_schema(_schema_file(tmp_path, _renamed))
    p = _jsonl(tmp_path / "old.jsonl", [{"text": "tip: clear the cache", "labels": ["helpful_share"]}])
    with caplog.at_level(logging.WARNING, logger="givetake.data"):
        posts = load_file(p, schema)
    assert posts.y[0, schema.names.index("resource_share")] == 1
    assert "1 row(s) use the old label name 'helpful_share', read as 'resource_share'" in caplog.text


def test_removed_label_is_dropped_from_old_data_and_refused_in_new(tmp_path: Path) -> None:
    def remove(raw: dict) -> None:
        raw["labels"] = [lab for lab in raw["labels"] if lab["name"] != "ask"]
        raw["removed"] = [{"name": "ask", "version": 2}]

    schema = load_schema(_schema_file(tmp_path, remove))
    old = _jsonl(tmp_path / "old.jsonl", [{"text": "RT to win our mug", "labels": ["pitch", "ask"]}])
    assert load_file(old, schema).y[0].tolist() == [1, 0, 0, 0, 0]
    new = _jsonl(tmp_path / "new.jsonl", [{"text": "RT pls", "labels": ["ask"], "schema_version": 2}])
    with pytest.raises(DataError, match=r"new\.jsonl, line 1: label 'ask' was removed in schema version 2"):
        load_file(new, schema)


def test_one_hot_columns_of_an_older_version(tmp_path: Path) -> None:
    schema = load_schema(_schema_file(tmp_path))
    p = tmp_path / "old.csv"
    p.write_text("text,pitch,ask,helpful_share,conversation_starter,customer_service_reply\nsale on,1,0,0,0,0\n")
    posts = load_file(p, schema)
    assert posts.y[0].tolist() == [1, 0, 0, 0, 0, 0] and posts.mask[0].tolist() == [1, 1, 1, 1, 1, 0]


def test_few_positives_and_no_negatives_are_warned_about(tmp_path: Path) -> None:
    schema = load_schema(_schema_file(tmp_path))
    p = _jsonl(tmp_path / "x.jsonl", [{"text": "thanks Ana", "labels": ["shoutout"]}, {"text": "hi", "labels": []}])
    warnings = label_warnings(load_file(p, schema))
    assert any("label 'shoutout' has only 1 known positive(s), fewer than 30" in w for w in warnings)
    assert any("label 'shoutout' has no known negatives" in w for w in warnings)


# --- the mask in training, thresholds and evaluation ---------------------------------------


def test_unknown_cells_are_left_out_of_weights_thresholds_and_metrics() -> None:
    y = np.array([[1, 1], [0, 0], [0, 0], [0, 0]])
    known = np.array([[1, 1], [1, 1], [1, 0], [1, 0]])
    w = pos_weights(y, cap=10, known=known)
    assert w is not None and w.tolist() == [3.0, 1.0]  # label 2: 1 positive, 1 judged negative
    probs = np.array([[0.9, 0.9], [0.2, 0.2], [0.3, 0.99], [0.1, 0.99]])
    # the unjudged rows score 0.99 on label 2: counted as negatives they would move its threshold
    assert tune_thresholds(y, probs, ["a", "b"], known)["b"] == tune_thresholds(y[:2], probs[:2], ["a", "b"])["b"]
    pred = (probs >= 0.5).astype(int)
    masked = compute_metrics(y, pred, ["a", "b"], known)
    assert masked["per_label"]["b"]["f1"] == 1.0 and masked["per_label"]["b"]["unknown"] == 2
    assert compute_metrics(y, pred, ["a", "b"])["per_label"]["b"]["f1"] == pytest.approx(0.5)
    # a label judged on no row is left out of the macro average instead of counting as 0
    none_judged = compute_metrics(y, pred, ["a", "b"], np.array([[1, 0]] * 4))
    assert none_judged["macro_f1"] == 1.0


def test_lexical_model_fits_each_label_on_its_judged_rows() -> None:
    texts = ["thanks so much Ana", "buy our socks", "thanks a lot rain", "buy socks now", "thanks team"] * 4
    y = np.array([[0, 1], [1, 0], [1, 0], [1, 0], [0, 0]] * 4)  # row 3 of each block: a wrong "pitch"...
    known = np.array([[1, 1], [1, 1], [0, 0], [1, 0], [1, 0]] * 4)  # ...that was never judged
    model = LexicalModel(["pitch", "shoutout"]).fit(texts, y, known)
    probs = model.predict_proba(["thanks a lot rain"])
    assert probs[0, 0] < 0.5  # the unjudged "pitch" on that text was not learnt


def test_masked_cells_do_not_count_in_the_loss() -> None:
    import torch

    trainer_cls: Any = _trainer_class()
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    model = lambda **_: SimpleNamespace(logits=logits)  # noqa: E731
    me = SimpleNamespace(pos_weight=None, distill_weight=0.0, row_weights=False)
    me._bce = lambda lg, t, w=None: trainer_cls._bce(me, lg, t, w)
    masked = trainer_cls.compute_loss(me, model, {"labels": torch.tensor([[1.0, -1.0], [0.0, -1.0]])})
    only_known = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], torch.tensor([1.0, 0.0]))
    assert float(masked) == pytest.approx(float(only_known))
    full = trainer_cls.compute_loss(me, model, {"labels": torch.tensor([[1.0, 0.0], [0.0, 1.0]])})
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert float(full) == pytest.approx(float(expected))


def test_a_new_label_is_trained_end_to_end(tiny_base_model: Path, small_data: Path, tmp_path: Path) -> None:
    schema = _schema_file(tmp_path)
    thanks = [f"Huge thanks to {n} for the help this week, legend" for n in ("Ana", "Raj", "Tom", "Eve", "Kim", "Lou")]
    other = [f"Our {n} sale starts Friday, book now" for n in ("socks", "hats", "mugs", "pens", "bags", "cups")]
    new = _jsonl(
        tmp_path / "new.jsonl",
        [{"text": t, "labels": ["shoutout"], "schema_version": 2} for t in thanks]
        + [{"text": t, "labels": ["pitch"], "schema_version": 2} for t in other],
    )
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--base-model",
            str(tiny_base_model),
            "--schema",
            str(schema),
            "--data",
            str(small_data),
            "--data",
            str(new),
            "--output-dir",
            str(tmp_path),
            "--run-id",
            "newlabel",
            "--epochs",
            "1",
            "--max-length",
            "32",
            "--no-register",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    run = tmp_path / "newlabel"
    assert json.loads((run / "config.json").read_text())["id2label"]["5"] == "shoutout"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["schema_version"] == 2 and metrics["labels"][-1] == "shoutout"
    assert any("'shoutout' has only 6 known positive(s)" in w for w in metrics["warnings"])
    assert metrics["data"]["train"]["unknown"]["shoutout"] > 0  # the version-1 rows
    val = metrics["validation"]["per_label"]["shoutout"]
    assert val["unknown"] > 0 and val["support"] + val["unknown"] <= metrics["validation"]["rows"]
    assert "## Warnings" in (run / "README.md").read_text()
    assert "not judged, left out: shoutout" in (run / "eval" / "validation" / "report.txt").read_text()
